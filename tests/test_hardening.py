"""Hardening: awkward inputs through the CLI, atomic outputs under SIGINT and errors, determinism,
cross-device refusal. Tiny untrained models keep every case to a few frames of a few pixels.

Each bad input exits 2 with one line on stderr and leaves nothing behind; each awkward but valid
input (1x1, odd sizes, grayscale, RGBA, 10-bit, variable frame rate) round-trips with the right shape.
"""

from __future__ import annotations

import hashlib
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import nvcodec
from conftest import REPO, moving_clip
from nvcodec import api, cli, io
from nvcodec.container import CODEC_NAMES
from nvcodec.errors import BitstreamError, InputError
from nvcodec.testing import forge_header

TINY = {"intra": "intra-tiny", "hypernerv": "hypernerv-tiny"}


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """``nvcodec ARGS`` in this process (models stay cached); returns (exit code, stdout, stderr)."""
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nvcodec: error:"), err
    for needle in needles:
        assert needle in lines[0], lines[0]


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- awkward sources ---------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def claimed_size_png(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims ``width x height`` (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b"")


def write_av(path: Path, frames: np.ndarray, codec: str, pix_fmt: str, pts: list[int] | None = None, **options) -> None:
    """Encode (T, H, W, 3) uint8 with PyAV; ``pts`` in milliseconds gives irregular timestamps."""
    import av

    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        if pts is not None:
            stream.time_base = Fraction(1, 1000)
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
            if pts is not None:
                frame.pts, frame.time_base = pts[index], Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        if len(frames) == 0:
            container.start_encoding()
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture
def bad_sources(tmp_path: Path) -> Path:
    (tmp_path / "folder.mp4").mkdir()
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "bomb.png").write_bytes(claimed_size_png(100_000, 100_000))
    (tmp_path / "wide.png").write_bytes(claimed_size_png(8193, 16))
    png = tmp_path / "whole.png"
    Image.fromarray(moving_clip(1, 32, 32)[0]).save(png)
    (tmp_path / "truncated.png").write_bytes(png.read_bytes()[:60])
    png.unlink()
    # an mp4 holding a video stream and no frames (fragmented: the empty track is kept)
    write_av(tmp_path / "zero-frames.mp4", np.zeros((0, 48, 64, 3), np.uint8), "libx264", "yuv420p", movflags="frag_keyframe+empty_moov")
    return tmp_path


@pytest.mark.parametrize(
    "name,needles",
    [
        ("folder.mp4", ("directory",)),
        ("empty.mp4", ("empty",)),
        ("zero-frames.mp4", ("no video frames",)),
        ("bomb.png", ("too large",)),
        ("wide.png", ("8193x16", "8192")),  # refused from the header: the pixels are never decoded
        ("truncated.png", ("truncated.png",)),
    ],
)
def test_bad_source_exits_2_with_one_line_and_writes_nothing(bad_sources: Path, capsys, name: str, needles) -> None:
    before = listing(bad_sources)
    out = bad_sources / "out.nvc"
    code, _, err = run_main(capsys, "encode", str(bad_sources / name), "-o", str(out), "--model", "intra-tiny")
    assert_one_line_error(code, err, *needles)
    assert listing(bad_sources) == before


def test_huge_image_header_refused_before_allocating(tmp_path: Path) -> None:
    # 100000 x 100000 RGB would be 30 GB; the refusal must come from the header alone
    import resource

    (tmp_path / "bomb.png").write_bytes(claimed_size_png(100_000, 100_000))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(InputError, match="too large"):
        io.probe(tmp_path / "bomb.png")
    with pytest.raises(InputError, match="too large"):
        io.read_video(tmp_path / "bomb.png")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB


def _gray(path: Path) -> np.ndarray:
    gray = np.tile(np.arange(0, 220, 10, dtype=np.uint8), (14, 1))  # (14, 22)
    Image.fromarray(gray, mode="L").save(path)
    return np.repeat(gray[None, ..., None], 3, axis=3)


def _rgba(path: Path) -> np.ndarray:
    rgba = np.zeros((9, 13, 4), np.uint8)
    rgba[..., 1] = 180
    rgba[..., 3] = 255
    rgba[:3, :3, 3] = 0  # transparent corner: composited over white
    Image.fromarray(rgba, mode="RGBA").save(path)
    expected = rgba[..., :3].copy()
    expected[:3, :3] = 255
    return expected[None]


def _one_pixel(path: Path) -> np.ndarray:
    pixel = np.array([[[10, 200, 30]]], np.uint8)
    Image.fromarray(pixel).save(path)
    return pixel[None]


def _odd(path: Path) -> np.ndarray:
    clip = moving_clip(1, 143, 175)
    io.write_video(path, clip)  # lossless FFV1
    return clip


def _ten_bit(path: Path) -> np.ndarray:
    clip = moving_clip(3, 32, 48)
    write_av(path, clip, "ffv1", "yuv420p10le")
    import av

    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p10le"
    return io.read_video(path).frames  # 10-bit 4:2:0 -> 8-bit RGB: compare with the reader's own conversion


def _vfr(path: Path) -> np.ndarray:
    clip = np.stack([np.full((24, 32, 3), 30 * i, np.uint8) for i in range(6)])
    write_av(path, clip, "ffv1", "bgr0", pts=[0, 40, 50, 200, 210, 500])
    return clip


@pytest.mark.parametrize(
    "codec,name,make",
    [
        ("intra", "one.png", _one_pixel),
        ("hypernerv", "one.png", _one_pixel),
        ("intra", "odd.mkv", _odd),
        ("hypernerv", "odd.mkv", _odd),
        ("intra", "gray.png", _gray),
        ("hypernerv", "rgba.png", _rgba),
        ("hypernerv", "ten-bit.mkv", _ten_bit),
        ("hypernerv", "vfr.mkv", _vfr),
    ],
)
def test_awkward_source_round_trips(tmp_path: Path, capsys, codec: str, name: str, make) -> None:
    source = tmp_path / name
    expected = make(source)  # what the reader must deliver: (T, H, W, 3) uint8 RGB
    assert np.array_equal(io.read_video(source).frames, expected)
    stream, decoded = tmp_path / "s.nvc", tmp_path / "d.mkv"
    code, out, err = run_main(capsys, "encode", str(source), "-o", str(stream), "--codec", codec, "--model", TINY[codec])
    assert code == 0 and f"encoded {expected.shape[0]} frame(s) {expected.shape[2]}x{expected.shape[1]}" in out, err
    assert run_main(capsys, "decode", str(stream), "-o", str(decoded))[0] == 0
    frames = io.read_video(decoded).frames
    assert frames.shape == expected.shape
    assert np.array_equal(frames, nvcodec.decode(stream))  # FFV1 output is the decoder's frames, bit for bit


def test_frame_range_of_variable_frame_rate_video_counts_frames(tmp_path: Path) -> None:
    expected = _vfr(tmp_path / "vfr.mkv")
    for start, stop in ((2, 4), (1, 6), (5, 6), (3, None)):
        assert np.array_equal(io.read_video(tmp_path / "vfr.mkv", start, stop).frames, expected[start:stop])


# -- streams used below ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def streams(tmp_path_factory) -> dict[str, Path]:
    """Two-chunk tiny streams: intra (one chunk per frame) and hypernerv (clips of clip_len frames)."""
    folder = tmp_path_factory.mktemp("streams")
    paths = {}
    for codec, frames in (("intra", 2), ("hypernerv", 10)):
        paths[codec] = folder / f"{codec}.nvc"
        paths[codec].write_bytes(nvcodec.encode(moving_clip(frames, 24, 40), codec=codec, model=TINY[codec], quality=1))
        assert len(nvcodec.info(paths[codec]).chunks) == 2
    return paths


# -- atomic outputs ----------------------------------------------------------------------------


@pytest.mark.parametrize("codec", CODEC_NAMES)
@pytest.mark.parametrize("output", ["out.mkv", "out.mp4", "frames"])
def test_error_in_second_chunk_leaves_no_output(streams, tmp_path: Path, capsys, monkeypatch, codec: str, output: str) -> None:
    from nvcodec import registry

    adapter = registry.load_codec(TINY[codec], "cpu", allow_untrained=True)
    original, calls = type(adapter).decode_chunk, []

    def failing(self, params, chunk, height, width):
        calls.append(chunk.frame_start)
        if len(calls) == 2:
            raise RuntimeError("simulated failure in the 2nd chunk")
        return original(self, params, chunk, height, width)

    monkeypatch.setattr(type(adapter), "decode_chunk", failing)
    with pytest.raises(RuntimeError, match="2nd chunk"):
        api.decode_file(streams[codec], tmp_path / output)
    assert listing(tmp_path) == []
    calls.clear()
    code, _, err = run_main(capsys, "decode", str(streams[codec]), "-o", str(tmp_path / output))
    assert code == 1 and "internal error" in err and len(calls) == 2
    assert listing(tmp_path) == []


SLOW_CLI = """
import pathlib, sys, time, warnings
warnings.filterwarnings("ignore", category=FutureWarning, module="torch")  # as cli.main does, but before our import
from {module} import {cls} as patched
original = patched.{method}
marker_path = sys.argv[1]
def slow(self, *args, **kwargs):
    with open(marker_path, "ab") as marker:  # one byte per call: the parent sees progress
        marker.write(b".")
    time.sleep({sleep})
    return original(self, *args, **kwargs)
patched.{method} = slow
from nvcodec.cli import main
sys.argv = [sys.argv[0], *sys.argv[2:]]
sys.exit(main())  # as the program: argv from sys.argv
"""


def interrupt_when(
    tmp_path: Path, script: str, args: list[str], ready, limit: float = 300.0, signum: int = signal.SIGINT
) -> subprocess.CompletedProcess:
    """Run the CLI with ``script``'s patch, send ``signum`` once ``ready(marker_bytes)``; return the result."""
    marker = tmp_path.parent / f"{tmp_path.name}.marker"
    marker.unlink(missing_ok=True)
    # a suite started in the background (``cmd &`` without job control) inherits SIGINT ignored, and Python keeps an
    # ignored SIGINT ignored: give the child the default disposition, as a terminal's foreground job has
    proc = subprocess.Popen([sys.executable, "-c", script, str(marker), *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + limit
    while not (marker.exists() and ready(marker.stat().st_size)):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the command never got under way"
        time.sleep(0.05)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=limit)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_decode_leaves_no_partial_file(streams, tmp_path: Path, signum: int) -> None:
    script = SLOW_CLI.format(module="nvcodec.hypernerv.video", cls="HyperNervVideoCodec", method="decode_chunk", sleep=3)
    # interrupted while the 2nd chunk decodes: the 1st is already in the temporary .mkv
    args = ["decode", str(streams["hypernerv"]), "-o", "out.mkv"]
    result = interrupt_when(tmp_path, script, args, lambda n: n >= 2, signum=signum)
    assert result.returncode == 130, result.stderr
    assert result.stderr.strip().splitlines() == ["nvcodec: interrupted"]
    assert listing(tmp_path) == []


def test_sigint_during_encode_leaves_no_output(tmp_path: Path) -> None:
    io.write_video(tmp_path / "clip.mkv", moving_clip(10, 24, 40))
    script = SLOW_CLI.format(module="nvcodec.hypernerv.video", cls="HyperNervVideoCodec", method="encode", sleep=30)
    args = ["encode", "clip.mkv", "-o", "clip.nvc", "--codec", "hypernerv", "--model", "hypernerv-tiny"]
    result = interrupt_when(tmp_path, script, args, lambda n: n >= 1)
    assert result.returncode == 130, result.stderr
    assert listing(tmp_path) == ["clip.mkv"]


def test_existing_outputs_kept_without_force(streams, tmp_path: Path, capsys) -> None:
    stream, decoded = tmp_path / "s.nvc", tmp_path / "d.mkv"
    stream.write_bytes(b"precious stream")
    decoded.write_bytes(b"precious video")
    io.write_video(tmp_path / "clip.mkv", moving_clip(1, 16, 16))
    code, _, err = run_main(capsys, "encode", str(tmp_path / "clip.mkv"), "-o", str(stream), "--model", "intra-tiny")
    assert_one_line_error(code, err, "exists", "--force")
    code, _, err = run_main(capsys, "decode", str(streams["intra"]), "-o", str(decoded))
    assert_one_line_error(code, err, "exists", "--force")
    assert stream.read_bytes() == b"precious stream" and decoded.read_bytes() == b"precious video"
    assert run_main(capsys, "decode", str(streams["intra"]), "-o", str(decoded), "--force")[0] == 0
    assert io.read_video(decoded).frames.shape == (2, 24, 40, 3)
    # a folder output replaces a file of that name with --force (a rename alone can't)
    (tmp_path / "frames").write_bytes(b"old")
    assert run_main(capsys, "decode", str(streams["intra"]), "-o", str(tmp_path / "frames"), "--force")[0] == 0
    assert listing(tmp_path / "frames") == ["frame_000000.png", "frame_000001.png"]


def test_output_that_is_the_input_refused_in_every_spelling(streams, tmp_path: Path, capsys) -> None:
    clip = tmp_path / "clip.mkv"
    io.write_video(clip, moving_clip(1, 16, 16))
    original = clip.read_bytes()
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.mkv").symlink_to(clip)
    os.link(clip, tmp_path / "hard.mkv")
    stream = tmp_path / "s.nvc"
    stream.write_bytes(streams["intra"].read_bytes())
    (tmp_path / "s-link.mkv").symlink_to(stream)
    for args in (
        ("encode", str(clip), "-o", str(tmp_path / "sub" / ".." / "clip.mkv")),
        ("encode", str(clip), "-o", str(tmp_path / "link.mkv")),
        ("encode", str(clip), "-o", str(tmp_path / "hard.mkv")),
        ("encode", str(tmp_path / "link.mkv"), "-o", str(clip)),
        ("decode", str(stream), "-o", str(tmp_path / "s-link.mkv")),
        ("decode", str(stream), "-o", str(tmp_path)),  # a folder output would replace the input's folder
    ):
        code, _, err = run_main(capsys, *args, "--force", *(["--model", "intra-tiny"] if args[0] == "encode" else []))
        assert_one_line_error(code, err, "input")
    assert clip.read_bytes() == original and stream.read_bytes() == streams["intra"].read_bytes()


# -- determinism and the GPU story -------------------------------------------------------------

DECODE_DIGEST = """
import hashlib, sys, torch
import nvcodec
for threads in (1, 2):
    torch.set_num_threads(threads)
    for path in sys.argv[1:]:
        frames = nvcodec.decode(path)
        print(threads, hashlib.sha256(frames.tobytes()).hexdigest(), frames.shape)
"""


def test_encode_is_deterministic_and_decode_matches_across_processes_and_threads(streams, tmp_path: Path) -> None:
    clips = {"intra": moving_clip(2, 24, 40), "hypernerv": moving_clip(10, 24, 40)}
    for codec, path in streams.items():
        again = nvcodec.encode(clips[codec], codec=codec, model=TINY[codec], quality=1)
        assert again == path.read_bytes(), f"{codec}: two encodes of the same input differ"
    expected = []
    for threads in (1, 2):
        for path in streams.values():
            frames = nvcodec.decode(path)
            expected.append(f"{threads} {hashlib.sha256(frames.tobytes()).hexdigest()} {frames.shape}")
    # a fresh process (not the encoder's), with 1 then 2 intra-op threads
    result = subprocess.run([sys.executable, "-c", DECODE_DIGEST, *map(str, streams.values())],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines() == expected


def test_stream_made_on_cuda_is_refused_on_cpu(streams, tmp_path: Path, capsys) -> None:
    forged = tmp_path / "gpu.nvc"
    forged.write_bytes(forge_header(streams["hypernerv"].read_bytes(), made_on="cuda"))  # header CRC is valid
    assert nvcodec.info(forged).made_on == "cuda"
    with pytest.raises(BitstreamError, match="encoded on cuda"):
        nvcodec.decode(forged)
    code, _, err = run_main(capsys, "decode", str(forged), "-o", str(tmp_path / "x.mkv"))
    assert_one_line_error(code, err, "cuda", "--device")
    assert listing(tmp_path) == ["gpu.nvc"]
