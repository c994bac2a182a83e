"""The JSON the API answers with (pydantic models): videos, stream info, health, errors."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ErrorOut", "VideoCreated", "ChunkOut", "StreamInfoOut", "VideoOut", "VideoList", "CacheOut", "HealthOut"]

JobStatus = Literal["queued", "encoding", "ready", "failed"]


class ErrorOut(BaseModel):
    error: str = Field(description="one line: what was refused and why")


class VideoCreated(BaseModel):
    id: str
    status: Literal["queued"]


class ChunkOut(BaseModel):
    index: int
    frame_start: int
    frame_stop: int
    bytes: int


class StreamInfoOut(BaseModel):
    """``nvcodec info --json`` of the stored stream (fields added there pass through)."""

    model_config = ConfigDict(extra="allow")

    codec: str
    model: str
    weights: str
    width: int
    height: int
    frame_count: int
    fps: str
    pixel_format: str
    made_on: str
    params: dict[str, Any]
    total_bytes: int
    header_bytes: int
    bpp: float
    chunks: list[ChunkOut]


class VideoOut(BaseModel):
    id: str
    status: JobStatus
    progress: float = Field(ge=0.0, le=1.0)
    codec: str
    model: str
    quality: int | None = Field(description="null: the model's middle level")
    frames: str = Field(description="the requested source range A:B ('A:' = to the end)")
    source_format: str
    source_bytes: int
    created_at: float
    error: str | None = None
    psnr_rgb: float | None = Field(default=None, description="the encoder's reconstruction against the source, dB")
    stream: StreamInfoOut | None = Field(default=None, description="when ready")


class VideoList(BaseModel):
    videos: list[VideoOut]


class CacheOut(BaseModel):
    bytes: int
    limit_bytes: int
    entries: int
    hits: int
    misses: int
    evictions: int


class HealthOut(BaseModel):
    status: Literal["ok"]
    version: str
    workers: int
    queue_limit: int
    jobs_in_flight: int
    cache: CacheOut
