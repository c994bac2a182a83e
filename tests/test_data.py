"""nvcodec.data: frames and clips of .nvc streams by index, through DataLoader workers."""

from __future__ import annotations

import pickle
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

import nvcodec
from nvcodec.data import NvcClipDataset, NvcVideo, decode_frames
from nvcodec.errors import InputError

from conftest import NVCODEC, REPO, moving_clip


@pytest.fixture(scope="module")
def streams(tmp_path_factory) -> dict:
    """Two hypernerv-tiny streams (12 and 10 frames) and one intra-tiny stream (3 frames), 48x64."""
    root = tmp_path_factory.mktemp("streams")
    paths = {}
    for name, frames, codec, model, seed in [("a", 12, "hypernerv", "hypernerv-tiny", 0), ("b", 10, "hypernerv", "hypernerv-tiny", 1), ("i", 3, "intra", "intra-tiny", 2)]:
        path = root / f"{name}.nvc"
        path.write_bytes(nvcodec.encode(moving_clip(frames, 48, 64, seed), codec, quality=1, model=model))
        paths[name] = path
    return paths


def _as_tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2)


def test_get_frames_at_reads_only_covering_chunks(streams):
    video = NvcVideo(streams["a"])
    assert len(video) == 12 and video.chunks_read == []
    got = video.get_frames_at([9, 0, 9, 3])
    assert got.dtype == torch.uint8 and got.shape == (4, 3, 48, 64)
    assert torch.equal(got, _as_tensor(nvcodec.decode(streams["a"])[[9, 0, 9, 3]]))
    assert sorted(video.chunks_read) == [0, 1]  # frames 0, 3 in clip 0 and 9 in clip 1, each read once
    assert torch.equal(video.get_frames_in_range(8, 12), _as_tensor(nvcodec.decode(streams["a"], frames=slice(8, 12))))
    assert video.chunks_read[-1:] == [1]
    with pytest.raises(InputError, match="12"):
        video.get_frames_at([12])
    with pytest.raises(InputError, match="-1"):
        video.get_frames_at([-1])
    with pytest.raises(InputError, match="range"):
        video.get_frames_in_range(5, 5)


def test_grouped_decode_of_several_streams_equals_one_by_one(streams):
    a, b, i = NvcVideo(streams["a"]), NvcVideo(streams["b"]), NvcVideo(streams["i"])
    together = decode_frames([(a, [1, 7, 11]), (b, [0, 9]), (i, [2, 0])])
    assert torch.equal(together[0], _as_tensor(nvcodec.decode(streams["a"])[[1, 7, 11]]))
    assert torch.equal(together[1], _as_tensor(nvcodec.decode(streams["b"])[[0, 9]]))
    assert torch.equal(together[2], _as_tensor(nvcodec.decode(streams["i"])[[2, 0]]))
    # The hypernerv chunks of both streams went through one pooled decode: same bytes as one by one.
    codec = nvcodec.data._codec_for(a.header, "cpu")
    items = [(v.header.params, v._open().read_chunk(k), 48, 64) for v in (a, b) for k in range(2)]
    pooled = codec.decode_chunks(items)
    for item, frames in zip(items, pooled):
        np.testing.assert_array_equal(frames, codec.decode_chunk(*item))


def test_dataset_through_dataloader_workers_matches_cli_decode(streams, tmp_path):
    out = tmp_path / "a_frames"
    subprocess.run([*NVCODEC, "decode", str(streams["a"]), "-o", str(out), "--quiet"], check=True, cwd=REPO, capture_output=True)
    cli_a = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(out.glob("*.png"))])
    assert cli_a.shape == (12, 48, 64, 3)
    reference = {0: cli_a, 1: nvcodec.decode(streams["b"])}
    dataset = NvcClipDataset([streams["a"], streams["b"]], clip_len=4, stride=3)
    assert dataset.clips == [(0, 0), (0, 3), (0, 6), (1, 0), (1, 3), (1, 6)]
    pickle.loads(pickle.dumps(dataset))  # what a spawned worker receives
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2, shuffle=False)
    batches = list(loader)
    assert [tuple(b.shape) for b in batches] == [(4, 4, 3, 48, 64), (2, 4, 3, 48, 64)]
    clips = torch.cat(batches)
    assert clips.dtype == torch.uint8
    for clip, (video, start) in zip(clips, dataset.clips):
        assert torch.equal(clip, _as_tensor(reference[video][start : start + 4]))
    assert torch.equal(dataset[5], clips[5])


def test_dataset_rejects_bad_clips(streams):
    with pytest.raises(InputError, match="clip_len"):
        NvcClipDataset([streams["a"]], clip_len=0)
    with pytest.raises(InputError, match="do not fit"):
        NvcClipDataset([streams["a"]], clip_len=4, clips=[(0, 9)])
    with pytest.raises(InputError, match="stream number"):
        NvcClipDataset([streams["a"]], clip_len=4, clips=[(1, 0)])
    with pytest.raises(InputError, match="not found"):
        NvcClipDataset([streams["a"].with_name("missing.nvc")])
    dataset = NvcClipDataset([streams["i"]], clip_len=2)
    assert len(dataset) == 1
    with pytest.raises(IndexError):
        dataset[1]


def test_bench_load_delivers_the_same_clips_from_every_loader(tmp_path):
    from nvcodec import io
    from nvcodec.bench.load import LoadOptions, run_load

    video = tmp_path / "clip.mkv"
    io.write_video(video, moving_clip(12, 48, 64))
    options = LoadOptions(loaders=("pyav", "npy"), frames=12, clips=5, clip_len=4)  # the .nvc loaders: tests above
    report = run_load(video, options)  # each loader's first clip is checked against its reference
    rows = {r["loader"]: r for r in report["results"]}
    assert list(rows) == ["pyav", "npy"]
    assert all(r["clips"] == 5 and r["frames"] == 20 and r["clips_per_s"] > 0 for r in rows.values())
    assert rows["pyav"]["stream_bytes"] > 0 and rows["pyav"]["psnr_rgb"] > 30 and rows["npy"]["stream_bytes"] is None
    assert report["input"]["frames"] == 12 and report["input"]["width"] == 64
    with pytest.raises(InputError, match="bogus"):
        run_load(video, LoadOptions(loaders=("bogus",)))
    with pytest.raises(InputError, match="fewer than one clip"):
        run_load(video, LoadOptions(loaders=("npy",), frames=3, clip_len=4))
