"""``/v1/videos/{id}/frames``: one frame (PNG, JPEG, .npy) or a range (.mp4, .mkv, .npy), decoded on demand.

Decoding runs in the service's decode threads (``--decode-threads``), off the event loop; only the
chunks that cover the asked frames are read, through the shared LRU chunk cache.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Response
from fastapi import Path as PathParam

from nvcodec.container import StreamHeader
from nvcodec.errors import NvcodecError
from nvcodec.serve.auth import get_service, require_key
from nvcodec.serve.catalogue import KeyRecord
from nvcodec.serve.frames import MEDIA_TYPES
from nvcodec.serve.routers.videos import ERROR_RESPONSES, decode_error, ready_stream
from nvcodec.serve.service import Service

__all__ = ["router"]

router = APIRouter(prefix="/v1/videos", tags=["frames"])

MAX_RANGE_BYTES = 1 << 30  # decoded RGB bytes of one range request
_T = TypeVar("_T")


async def _off_loop(service: Service, video_id: str, fn: Callable[..., _T], *args) -> _T:
    try:
        return await asyncio.get_running_loop().run_in_executor(service.decode_pool, fn, *args)
    except (FileNotFoundError, NvcodecError) as exc:
        raise decode_error(video_id, exc) from None


async def _ready_header(service: Service, key: KeyRecord, video_id: str) -> tuple[Path, StreamHeader]:
    _, path = ready_stream(service, key, video_id)
    return path, await _off_loop(service, video_id, service.frames.header, video_id, path)


def _no_frame(video_id: str, index: int, header: StreamHeader) -> HTTPException:
    return HTTPException(404, f"no frame {index}: video {video_id} has frames 0..{header.frame_count - 1}")


@router.get("/{video_id}/frames/{index}", response_class=Response, responses={**ERROR_RESPONSES, 200: {"content": {t: {} for t in ("image/png", "image/jpeg", "application/x-npy")}}})
async def get_frame(
    video_id: str,
    index: int = PathParam(ge=0),
    format: Literal["png", "jpeg", "npy"] = "png",
    key: KeyRecord = Depends(require_key),
    service: Service = Depends(get_service),
) -> Response:
    """Frame ``index`` (from 0), decoded from the one chunk that covers it. ``npy``: (H, W, 3) uint8."""
    path, header = await _ready_header(service, key, video_id)
    if index >= header.frame_count:
        raise _no_frame(video_id, index, header)
    data = await _off_loop(service, video_id, service.frames.frame_bytes, video_id, path, index, format)
    return Response(data, media_type=MEDIA_TYPES[format], headers={"Cache-Control": "private, max-age=3600"})


@router.get("/{video_id}/frames", response_class=Response, responses={**ERROR_RESPONSES, 200: {"content": {t: {} for t in ("video/mp4", "video/x-matroska", "application/x-npy")}}})
async def get_frames(
    video_id: str,
    start: int = 0,
    stop: int | None = None,
    format: Literal["mp4", "mkv", "npy"] = "mkv",
    key: KeyRecord = Depends(require_key),
    service: Service = Depends(get_service),
) -> Response:
    """Frames ``[start, stop)`` (``stop`` defaults to the end): lossless FFV1 ``mkv``, H.264 ``mp4`` or ``npy`` (T, H, W, 3)."""
    path, header = await _ready_header(service, key, video_id)
    stop = header.frame_count if stop is None else min(stop, header.frame_count)
    if start < 0 or start >= header.frame_count:
        raise _no_frame(video_id, start, header)
    if stop <= start:
        raise HTTPException(422, f"frames {start}:{stop}: need start < stop")
    if (stop - start) * header.width * header.height * 3 > MAX_RANGE_BYTES:
        raise HTTPException(413, f"frames {start}:{stop} decode to more than {MAX_RANGE_BYTES >> 20} MiB; ask for a shorter range")
    data = await _off_loop(service, video_id, service.frames.range_bytes, video_id, path, start, stop, format)
    filename = f"{video_id}-{start}-{stop}.{format}"
    return Response(data, media_type=MEDIA_TYPES[format], headers={"Content-Disposition": f'attachment; filename="{filename}"'})
