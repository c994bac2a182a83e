"""The RD benchmark (nvcodec.bench): real-byte rates, result files with their schema, CLI behaviour.

Benchmarks are not tests: nothing here asserts a timing. Everything runs on tiny synthetic clips.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import moving_clip
from nvcodec import io, metrics
from nvcodec.bench import classical, rd
from nvcodec.bench.bdrate import bd_rate
from nvcodec.bench.results import RDPoint, RDResults, load_results
from nvcodec.errors import InputError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("media") / "tiny.mkv"
    io.write_video(path, moving_clip(frames=4, height=64, width=64))  # lossless FFV1
    return path


@pytest.fixture(scope="module")
def tiny_results(tiny_video: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[RDResults, Path]:
    options = rd.RDOptions(
        codecs=("x264", "jpeg"),
        params=(("x264", (23, 33)), ("jpeg", (40, 80))),
        anchor_video="x264",  # x265 is not run here; BD-rates are taken against x264
    )
    results = rd.run_rd([tiny_video], options, command="test")
    out = tmp_path_factory.mktemp("rd")
    rd.write_outputs(results, out)
    return results, out


def test_rd_points_cover_every_codec_setting(tiny_results) -> None:
    results, _ = tiny_results
    settings = [(p.codec, p.param) for p in results.points]
    assert settings == [("x264", 23), ("x264", 33), ("jpeg", 40), ("jpeg", 80)]
    for point in results.points:
        assert (point.frames, point.height, point.width) == (4, 64, 64)
        assert point.bpp == pytest.approx(8 * point.bytes / (4 * 64 * 64), rel=1e-12)
        assert 20.0 < point.psnr_rgb < 60.0 and 20.0 < point.psnr_y < 60.0
        assert 0.5 < point.ms_ssim <= 1.0
        assert point.encode_fps > 0 and point.decode_fps > 0
    x264 = results.points_for("tiny", "x264")
    assert x264[0].param == 33 and x264[0].psnr_rgb < x264[1].psnr_rgb  # higher CRF: fewer bits, lower PSNR


def test_rd_bd_rates_against_the_anchor(tiny_results) -> None:
    results, _ = tiny_results
    by_codec = {e.codec: e for e in results.bd_rates}
    assert set(by_codec) == {"x264", "jpeg"} and all(e.anchor == "x264" for e in by_codec.values())
    assert by_codec["x264"].bd_rate_psnr_rgb == pytest.approx(0.0, abs=1e-9)
    # The tiny clip's curves overlap (x264 30.8-35.3 dB, JPEG 34.9-37.3 dB): the entry is the BD-rate
    # of JPEG's points against x264's, and per-frame JPEG costs more than x264 on video.
    x264, jpeg = results.points_for("tiny", "x264"), results.points_for("tiny", "jpeg")
    expected_psnr = bd_rate([p.bpp for p in x264], [p.psnr_rgb for p in x264], [p.bpp for p in jpeg], [p.psnr_rgb for p in jpeg])
    expected_ssim = bd_rate([p.bpp for p in x264], [p.ms_ssim_db for p in x264], [p.bpp for p in jpeg], [p.ms_ssim_db for p in jpeg])
    assert math.isfinite(expected_psnr) and expected_psnr > 0.0
    assert by_codec["jpeg"].bd_rate_psnr_rgb == pytest.approx(expected_psnr, rel=1e-12)
    assert by_codec["jpeg"].bd_rate_ms_ssim == pytest.approx(expected_ssim, rel=1e-12)


def test_rd_files_follow_the_schema(tiny_results) -> None:
    results, out = tiny_results
    raw = json.loads((out / "results.json").read_text())
    assert raw["schema_version"] == 1
    assert set(raw) == {f.name for f in dataclasses.fields(RDResults)}
    assert set(raw["points"][0]) == {f.name for f in dataclasses.fields(RDPoint)}
    assert [c["rate_measure"] for c in raw["codecs"]] == ["elementary stream", "image file"]
    assert raw["inputs"][0]["kind"] == "video" and raw["inputs"][0]["frames"] == 4
    assert _same_but_nan(load_results(out / "results.json"), results)
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(results.points)
    assert list(rows[0]) == [f.name for f in dataclasses.fields(RDPoint)]
    assert int(rows[0]["bytes"]) == results.points[0].bytes
    png = (out / "rd.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 5_000
    table = rd.format_table(results)
    assert "tiny" in table and "BD-rate vs x264" in table


def _same_but_nan(a: RDResults, b: RDResults) -> bool:
    """Equality where NaN == NaN (a NaN BD-rate round-trips through JSON null)."""
    return json.dumps(dataclasses.asdict(a), default=str) == json.dumps(dataclasses.asdict(b), default=str)


def test_classical_bpp_counts_the_elementary_stream(tmp_path: Path) -> None:
    frames = moving_clip(frames=4, height=64, width=64)
    stream = classical.encode(frames, "x264", 28)
    assert stream.bpp == 8 * sum(len(p) for p in stream.packets) / (4 * 64 * 64)
    # The packets alone are the whole stream: as a raw .h264 file they demux and decode on their own.
    raw = tmp_path / "clip.h264"
    raw.write_bytes(b"".join(stream.packets))
    assert raw.stat().st_size == stream.num_bytes
    # (a raw elementary stream is not an accepted nvcodec input: demux it with PyAV's h264 demuxer)
    import av

    with av.open(str(raw), format="h264") as container:
        assert sum(1 for _ in container.decode(video=0)) == frames.shape[0]
    decoded = classical.decode(stream)
    assert decoded.shape == frames.shape and metrics.psnr_rgb(frames, decoded) > 30.0
    assert classical.ClassicalStream.from_bytes(stream.to_bytes()) == stream


def test_image_codec_rate_is_the_file_size() -> None:
    from PIL import Image

    frames = moving_clip(frames=2, height=40, width=56)
    stream = classical.encode(frames, "jpeg", 75)
    assert len(stream.packets) == 2 and stream.num_bytes == sum(len(p) for p in stream.packets)
    for packet in stream.packets:
        assert packet.startswith(b"\xff\xd8")  # a complete JFIF file per frame
        with Image.open(__import__("io").BytesIO(packet)) as image:
            assert image.size == (56, 40)


def test_odd_sizes_are_padded_for_yuv420_and_cropped_back() -> None:
    frames = moving_clip(frames=1, height=21, width=33)
    stream = classical.encode(frames, "x265", 28)
    decoded = classical.decode(stream)
    assert decoded.shape == frames.shape
    assert stream.bpp == pytest.approx(8 * stream.num_bytes / (21 * 33))


def test_centre_crop_and_bad_arguments(tiny_video: Path) -> None:
    loaded = rd.load_input(tiny_video, frames=2, crop=(32, 16), name="tiny")
    full = io.read_video(tiny_video).frames
    assert loaded.frames.shape == (2, 16, 32, 3)
    np.testing.assert_array_equal(loaded.frames, full[:2, 24:40, 16:48])
    with pytest.raises(InputError):
        rd.load_input(tiny_video, frames=None, crop=(128, 16), name="tiny")
    with pytest.raises(InputError):
        rd.parse_size("12by4")
    with pytest.raises(InputError):
        rd.run_rd([tiny_video], rd.RDOptions(codecs=("x264", "mpeg2")))
    with pytest.raises(InputError):
        rd.resolve_models(["intra"], ["intra-tiny", "intra-small"], log=lambda line: None)


def test_cli_refuses_to_overwrite_results(tiny_video: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from nvcodec.cli import main

    args = ["bench", "rd", str(tiny_video), "--codecs", "jpeg", "--jpeg-qualities", "50,90", "--frames", "1", "--out", str(tmp_path), "-q"]
    assert main(args) == 0
    assert "anchor x265 not run" in capsys.readouterr().out
    assert {p.name for p in tmp_path.iterdir()} == {"results.json", "results.csv", "rd.png"}
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0


def test_seams_input_spec_takes_scale_crop_and_first_frame():
    from nvcodec import io
    from nvcodec.bench.hypernerv_seams import load

    path = "nvcodec/media/demo.mp4"
    source = io.read_video(path, 3, 5).frames
    name, frames = load(f"{path},2,64x32,3", 2)
    assert name.endswith("64x32 from frame 3") and frames.shape == (2, 32, 64, 3)
    box = source[:, : source.shape[1] // 2 * 2, : source.shape[2] // 2 * 2].astype(np.float32)
    box = box.reshape(2, box.shape[1] // 2, 2, box.shape[2] // 2, 2, 3).mean((2, 4))
    top, left = (box.shape[1] - 32) // 2, (box.shape[2] - 64) // 2
    expected = np.clip(np.round(box[:, top : top + 32, left : left + 64]), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(frames, expected)
    assert load(path, 2)[1].shape[0] == 2 and "from frame" not in load(path, 2)[0]
