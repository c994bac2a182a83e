"""What ``nvcodec serve`` is started with, and where it keeps things under ``--data DIR``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nvcodec.container import CODEC_NAMES
from nvcodec.errors import InputError

__all__ = ["ServeConfig", "DataLayout", "CODECS", "parse_models"]

CODECS = CODEC_NAMES


@dataclass(frozen=True)
class DataLayout:
    """``DIR/catalogue.sqlite3``, ``DIR/streams/ID.nvc``, ``DIR/uploads/ID.EXT`` and ``DIR/tmp``."""

    root: Path

    @property
    def catalogue(self) -> Path:
        from nvcodec.serve.catalogue import CATALOGUE_NAME

        return self.root / CATALOGUE_NAME

    @property
    def streams(self) -> Path:
        return self.root / "streams"

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def stream(self, video_id: str) -> Path:
        return self.streams / f"{video_id}.nvc"

    def upload(self, video_id: str, source_format: str) -> Path:
        return self.uploads / f"{video_id}.{source_format}"

    def create(self) -> None:
        if not self.root.parent.is_dir():
            raise InputError(f"--data {self.root}: its parent folder does not exist")
        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"--data {self.root} exists and is not a folder")
        for folder in (self.root, self.streams, self.uploads, self.tmp):
            folder.mkdir(exist_ok=True)


@dataclass(frozen=True)
class ServeConfig:
    data: Path
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1  # encode worker processes
    queue_limit: int = 8  # encodes waiting beyond those running; more -> 503
    max_upload_bytes: int = 512 << 20
    max_pixels: int = 1920 * 1080  # per frame (width x height)
    max_frames: int = 300  # per video, after frames=A:B
    cache_bytes: int = 256 << 20  # decoded chunks kept in memory
    decode_threads: int = 2  # frame requests decoding at once
    models: dict[str, str] = field(default_factory=dict)  # codec -> registered model (default: the shipped one)

    def __post_init__(self) -> None:
        checks = {
            "--workers": (self.workers, 1, 64),
            "--queue": (self.queue_limit, 0, 10_000),
            "--port": (self.port, 0, 65535),
            "--max-upload-mb": (self.max_upload_bytes, 1, 1 << 50),
            "--max-pixels": (self.max_pixels, 1, 8192 * 8192),
            "--max-frames": (self.max_frames, 1, 100_000),
            "--cache-mb": (self.cache_bytes, 0, 1 << 50),
            "--decode-threads": (self.decode_threads, 1, 256),
        }
        for flag, (value, low, high) in checks.items():
            if not low <= value <= high:
                raise InputError(f"{flag} {value} outside {low}..{high}")
        unknown = set(self.models) - set(CODECS)
        if unknown:
            raise InputError(f"--models: unknown codec(s) {sorted(unknown)}; use {', '.join(CODECS)}")

    @property
    def layout(self) -> DataLayout:
        return DataLayout(Path(self.data))

    def model_for(self, codec: str) -> str:
        from nvcodec import registry

        return self.models.get(codec) or registry.default_model(codec)


def parse_models(text: str) -> dict[str, str]:
    """``"intra=intra-tiny,hypernerv=hypernerv-tiny"`` -> {codec: model}; empty -> the shipped defaults."""
    models = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        codec, sep, model = item.partition("=")
        if not sep or not codec.strip() or not model.strip():
            raise InputError(f"--models {text!r}: expected CODEC=MODEL[,CODEC=MODEL]")
        models[codec.strip()] = model.strip()
    return models
