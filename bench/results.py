"""Typed RD results and their files: ``results.json`` (schema below), ``results.csv``.

``results.json`` (``schema_version`` 1) is ``dataclasses.asdict(RDResults)``::

    {
      "schema_version": 1,
      "created_utc": "2026-11-22T05:00:00Z",
      "command": "nvcodec bench rd ...",          # argv that made the file
      "machine": {"platform", "python", "cpu_count", "torch", "av", "ffmpeg", "device"},
      "anchor_video": "x265", "anchor_image": "jpeg",
      "codecs": [{"name", "family", "model", "settings", "rate_measure"}, ...],
      "inputs": [{"name", "path", "kind", "source_width", "source_height", "frames",
                  "width", "height", "crop"}, ...],
      "points": [{"input", "codec", "model", "param_name", "param", "frames", "width", "height",
                  "bytes", "bpp", "psnr_rgb", "psnr_y", "ms_ssim", "ms_ssim_db",
                  "encode_seconds", "decode_seconds", "encode_fps", "decode_fps"}, ...],
      "bd_rates": [{"input", "codec", "anchor", "bd_rate_psnr_rgb", "bd_rate_ms_ssim"}, ...]
    }

Units: ``bytes`` are real bytes (``codecs[].rate_measure`` says which: the whole ``.nvc`` file,
the elementary stream, or the image files); ``bpp = 8 * bytes / (frames * width * height)`` of the
coded (cropped) frames; PSNR in dB, mean over frames of per-frame PSNR (``nvcodec.metrics``);
``ms_ssim`` in [0, 1] and ``ms_ssim_db = -10 log10(1 - ms_ssim)``; seconds are wall time for the
whole clip (encode: RGB frames in memory -> bytes; decode: bytes -> RGB frames), ``*_fps = frames /
seconds``. BD-rates are percent against the input's anchor over the overlapping quality range
(``nvcodec.bench.bdrate``), NaN (JSON ``null``) when the curves do not overlap. NaN values are
written as JSON ``null``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "SCHEMA_VERSION",
    "RDPoint",
    "InputInfo",
    "CodecInfo",
    "MachineInfo",
    "BDRateEntry",
    "RDResults",
    "ms_ssim_db",
    "write_json",
    "write_csv",
    "load_results",
]

SCHEMA_VERSION = 1


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on the dB scale used in learned-compression papers: ``-10 log10(1 - ms_ssim)``."""
    return -10.0 * math.log10(max(1.0 - value, 1e-10))


@dataclass(frozen=True)
class RDPoint:
    """One codec setting on one input: rate from real bytes, quality, speed."""

    input: str  # InputInfo.name
    codec: str  # "intra", "hypernerv", "x264", "x265", "svtav1", "jpeg", "webp"
    model: str  # nvcodec model name, or the library ("libx264", "JPEG")
    param_name: Literal["quality", "crf"]  # nvcodec quality level / Pillow quality, or CRF
    param: int
    frames: int
    width: int
    height: int
    bytes: int
    bpp: float
    psnr_rgb: float
    psnr_y: float
    ms_ssim: float
    ms_ssim_db: float
    encode_seconds: float
    decode_seconds: float
    encode_fps: float
    decode_fps: float

    @property
    def setting(self) -> str:
        return f"{self.param_name}={self.param}"


@dataclass(frozen=True)
class InputInfo:
    name: str  # file stem, unique within a run
    path: str
    kind: Literal["video", "image"]
    source_width: int
    source_height: int
    frames: int  # frames coded (after --frames)
    width: int  # after --crop
    height: int
    crop: str | None  # "WxH" centre crop, or None


@dataclass(frozen=True)
class CodecInfo:
    name: str
    family: Literal["nvcodec", "pyav", "pillow"]
    model: str
    settings: str  # human-readable: preset, pixel format, the parameter swept
    rate_measure: Literal["nvc file", "elementary stream", "image file"]


@dataclass(frozen=True)
class MachineInfo:
    platform: str
    python: str
    cpu_count: int
    torch: str
    av: str
    ffmpeg: str
    device: str


@dataclass(frozen=True)
class BDRateEntry:
    input: str
    codec: str
    anchor: str
    bd_rate_psnr_rgb: float  # percent; NaN when the PSNR ranges do not overlap
    bd_rate_ms_ssim: float  # percent, quality = MS-SSIM in dB


@dataclass(frozen=True)
class RDResults:
    schema_version: int
    created_utc: str
    command: str
    machine: MachineInfo
    anchor_video: str
    anchor_image: str
    codecs: tuple[CodecInfo, ...]
    inputs: tuple[InputInfo, ...]
    points: tuple[RDPoint, ...]
    bd_rates: tuple[BDRateEntry, ...]

    def points_for(self, input_name: str, codec: str) -> list[RDPoint]:
        """The points of one curve, in increasing rate."""
        return sorted((p for p in self.points if p.input == input_name and p.codec == codec), key=lambda p: p.bpp)

    def codecs_for(self, input_name: str) -> list[str]:
        """Codec names with points on ``input_name``, in the run's codec order."""
        present = {p.codec for p in self.points if p.input == input_name}
        return [c.name for c in self.codecs if c.name in present]

    def anchor_for(self, info: InputInfo) -> str:
        return self.anchor_image if info.kind == "image" else self.anchor_video


def _nan_to_none(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(results: RDResults, path: str | os.PathLike) -> None:
    """Write ``results`` as ``results.json`` (strict JSON: NaN becomes null)."""
    text = json.dumps(_nan_to_none(dataclasses.asdict(results)), indent=1, allow_nan=False)
    _atomic_write_text(Path(path), text + "\n")


def write_csv(results: RDResults, path: str | os.PathLike) -> None:
    """One row per ``RDPoint``; the columns are its fields, in order."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    names = [f.name for f in dataclasses.fields(RDPoint)]
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        for point in results.points:
            row = dataclasses.astuple(point)
            writer.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])
    os.replace(tmp, path)


def _float(value: object) -> float:
    return math.nan if value is None else float(value)  # type: ignore[arg-type]


def _build(cls: type, raw: dict) -> object:
    """Rebuild a flat dataclass from its JSON dict, turning null floats back into NaN."""
    values = {}
    for field in dataclasses.fields(cls):
        value = raw[field.name]
        values[field.name] = _float(value) if field.type == "float" else value
    return cls(**values)


def load_results(path: str | os.PathLike) -> RDResults:
    """Read a ``results.json`` back into ``RDResults`` (raises ValueError on another schema version)."""
    raw = json.loads(Path(path).read_text())
    if raw.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path}: schema_version {raw.get('schema_version')!r}, expected {SCHEMA_VERSION}")
    return RDResults(
        schema_version=raw["schema_version"],
        created_utc=raw["created_utc"],
        command=raw["command"],
        machine=_build(MachineInfo, raw["machine"]),  # type: ignore[arg-type]
        anchor_video=raw["anchor_video"],
        anchor_image=raw["anchor_image"],
        codecs=tuple(_build(CodecInfo, c) for c in raw["codecs"]),  # type: ignore[misc]
        inputs=tuple(_build(InputInfo, i) for i in raw["inputs"]),  # type: ignore[misc]
        points=tuple(_build(RDPoint, p) for p in raw["points"]),  # type: ignore[misc]
        bd_rates=tuple(_build(BDRateEntry, b) for b in raw["bd_rates"]),  # type: ignore[misc]
    )
