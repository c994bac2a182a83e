"""Golden streams: one small ``.nvc`` per registered model, written by this code, pins format and numerics.

``tests/data/golden/`` holds, for every model in the registry (the shipped ones and the seeded
untrained tiny ones), ``NAME.nvc``: two 64x64 frames (``source.npy``, cut from the bundled demo clip)
encoded at the middle quality level, in ``golden.json`` the sha256 of the stream and of its decoded
frames and the platform that recorded them, and in ``frames.npz`` those frames. The tests decode every
stream and re-encode the source, so that any change of the format, of the numerics or of the weights
fails here until it is deliberate.

Exactness holds on the recording platform (torch version, CPU kernel level, CPU vendor and the
instruction sets in ``KERNEL_FLAGS``): there the stream and frame hashes must match. Float kernels of
other CPUs round the decoders' last bits differently, so elsewhere the frames may differ by one level
in a few samples (measured: at most 1, in under 0.01 % of them, under ``ATEN_CPU_CAPABILITY=avx2`` and
``=default``, and on an AMX Intel CPU against a stream recorded on an AMD one); anything more, such as
rANS tables that differ between machines (garbage, 178 levels off), fails everywhere.

After a deliberate change (new weights, a new chunk version, ...), regenerate and commit the files,
and say why in the commit message::

    NVCODEC_REGEN_GOLDEN=1 OMP_NUM_THREADS=1 python -m pytest tests/test_golden.py

Without the flag the tests never write anything.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

import nvcodec
from nvcodec import container, metrics, registry

DATA = Path(__file__).parent / "data" / "golden"
HASHES = DATA / "golden.json"
FRAMES = DATA / "frames.npz"
SOURCE = DATA / "source.npy"
REGENERATE = os.environ.get("NVCODEC_REGEN_GOLDEN") == "1"
MODELS = sorted(registry.MODELS)


# CPU features that change which float kernels oneDNN/MKL pick under the same ATen capability level: an
# Intel CPU with AMX and an AMD one without, both "AVX512" to ATen, decode the intra golden stream one
# level apart in one sample (measured 2026-12-06).
KERNEL_FLAGS = ("avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_tile")


@functools.cache  # fixed for the process; read /proc/cpuinfo once
def platform() -> str:
    """What float results depend on: the torch build, the CPU kernel level it dispatches to, the CPU's
    vendor and the instruction sets above (from ``/proc/cpuinfo`` where there is one)."""
    import torch

    vendor, flags = "unknown CPU", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "vendor_id":
                vendor = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    extras = "+".join(flag for flag in KERNEL_FLAGS if flag in flags) or "none"
    return f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}, {vendor}, {extras}"


def assert_recorded_frames(decoded: np.ndarray, record: dict, recorded: np.ndarray) -> None:
    """``decoded`` are the recorded frames: exactly on the recording platform, within one level in at
    most 0.1 % of the samples on another (module docstring)."""
    assert decoded.shape == recorded.shape
    if record["platform"] == platform():
        assert frames_sha256(decoded) == record["frames_sha256"]
        return
    error = np.abs(decoded.astype(np.int16) - recorded.astype(np.int16))
    assert error.max() <= 1 and np.count_nonzero(error) <= 1e-3 * error.size, (error.max(), np.count_nonzero(error))


def frames_sha256(frames: np.ndarray) -> str:
    """sha256 over the shape and the raw uint8 samples of (T, H, W, 3) frames."""
    digest = hashlib.sha256(repr(tuple(frames.shape)).encode())
    digest.update(np.ascontiguousarray(frames, dtype=np.uint8).tobytes())
    return digest.hexdigest()


def _source() -> np.ndarray:
    if not SOURCE.is_file():  # first generation only: two centre crops of the bundled demo clip
        from nvcodec import io

        video = io.read_video(Path(nvcodec.__file__).parent / "media" / "demo.mp4", 0, 2).frames
        top, left = (video.shape[1] - 64) // 2, (video.shape[2] - 64) // 2
        np.save(SOURCE, np.ascontiguousarray(video[:2, top : top + 64, left : left + 64]))
    return np.load(SOURCE)


def _encode(name: str, source: np.ndarray) -> bytes:
    spec = registry.get_spec(name)
    return nvcodec.encode(source, codec=spec.codec, model=name, quality=spec.quality_levels // 2)


@pytest.fixture(scope="module")
def golden() -> dict[str, dict]:
    if REGENERATE:
        DATA.mkdir(parents=True, exist_ok=True)
        source = _source()
        table, frames = {}, {}
        for name in MODELS:
            stream = _encode(name, source)
            (DATA / f"{name}.nvc").write_bytes(stream)
            frames[name] = nvcodec.decode(stream)
            table[name] = {
                "stream_sha256": hashlib.sha256(stream).hexdigest(),
                "frames_sha256": frames_sha256(frames[name]),
                "bytes": len(stream),
                "platform": platform(),
            }
        HASHES.write_text(json.dumps(table, indent=2, sort_keys=True) + "\n")
        np.savez_compressed(FRAMES, **frames)
    return json.loads(HASHES.read_text())


@pytest.fixture(scope="module")
def recorded(golden) -> dict[str, np.ndarray]:
    with np.load(FRAMES) as frames:
        return {name: frames[name] for name in frames.files}


def test_every_registered_model_has_a_golden_stream(golden, recorded) -> None:
    assert sorted(golden) == MODELS == sorted(recorded)
    for name in MODELS:  # the stored frames are the ones whose hash was recorded
        assert frames_sha256(recorded[name]) == golden[name]["frames_sha256"]


@pytest.mark.parametrize("name", MODELS)
def test_golden_stream_decodes_to_its_recorded_frames(golden, recorded, name: str) -> None:
    stream = (DATA / f"{name}.nvc").read_bytes()
    assert hashlib.sha256(stream).hexdigest() == golden[name]["stream_sha256"]
    assert nvcodec.info(stream).model == name
    decoded = nvcodec.decode(stream)
    assert decoded.shape == (2, 64, 64, 3)
    assert_recorded_frames(decoded, golden[name], recorded[name])


def _header(stream: bytes) -> tuple:
    info = nvcodec.info(stream)
    return info.codec, info.model, info.weights, info.width, info.height, info.frame_count, info.params


@pytest.mark.parametrize("name", MODELS)
def test_todays_encoder_writes_the_golden_bytes(golden, recorded, name: str) -> None:
    """The same bytes on the recording platform; elsewhere (where the encoder's float analysis may round
    a latent the other way) the same header, a size within 2 % and frames of at least 40 dB against the
    recorded ones."""
    stream = _encode(name, _source())
    if golden[name]["platform"] == platform():
        assert hashlib.sha256(stream).hexdigest() == golden[name]["stream_sha256"]
        return
    assert _header(stream) == _header((DATA / f"{name}.nvc").read_bytes())
    assert abs(len(stream) - golden[name]["bytes"]) <= 0.02 * golden[name]["bytes"]
    assert metrics.psnr_rgb(recorded[name], nvcodec.decode(stream)) >= 40.0


# Streams of the previous chunk layouts (intra chunk version 1, hypernerv payload version 1), written
# at d86e821 by the seeded tiny models (whose weights never change): today's decoder must still give
# exactly the frames it gave then (README, "Stream versions").
LEGACY = DATA / "v1"


@pytest.mark.parametrize("name", ["intra-tiny", "hypernerv-tiny"])
def test_version_1_golden_stream_still_decodes_to_its_recorded_frames(name: str) -> None:
    table = json.loads((LEGACY / "golden.json").read_text())
    stream = (LEGACY / f"{name}.nvc").read_bytes()
    assert hashlib.sha256(stream).hexdigest() == table[name]["stream_sha256"]
    assert container.StreamReader(stream).read_chunk(0).payload[0] == 1  # the old layout's version byte
    with np.load(LEGACY / "frames.npz") as frames:
        recorded = frames[name]
    assert frames_sha256(recorded) == table[name]["frames_sha256"]
    assert_recorded_frames(nvcodec.decode(stream), table[name], recorded)
