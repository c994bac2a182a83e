"""``/v1/videos``: upload (202), list, status, the ``.nvc`` stream with HTTP Range, delete."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from nvcodec import api, io, registry
from nvcodec.container import CODEC_NAMES
from nvcodec.errors import InputError, NvcodecError
from nvcodec.serve.auth import get_service, require_key
from nvcodec.serve.catalogue import KeyRecord, VideoRecord
from nvcodec.serve.schemas import ErrorOut, StreamInfoOut, VideoCreated, VideoList, VideoOut
from nvcodec.serve.service import Service, is_video_id, new_video_id

__all__ = ["router", "lookup_video", "ready_stream", "decode_error", "ERROR_RESPONSES"]

router = APIRouter(prefix="/v1/videos", tags=["videos"])

RETRY_AFTER_S = 10
_STREAM_BLOCK = 64 * 1024
_FORMAT_TOKEN = re.compile(r"[a-z0-9]+")
ERROR_RESPONSES = {code: {"model": ErrorOut} for code in (401, 404, 409, 413, 415, 416, 422, 503)}


def lookup_video(service: Service, key: KeyRecord, video_id: str) -> VideoRecord:
    """This key's video, else 404 (another key's id is indistinguishable from a missing one)."""
    record = service.catalogue.video(video_id, key.id) if is_video_id(video_id) else None
    if record is None:
        raise HTTPException(404, f"no video {video_id!r}")
    return record


def ready_stream(service: Service, key: KeyRecord, video_id: str) -> tuple[VideoRecord, Path]:
    """This key's video and its published stream, else 404, or 409 while it is not ready."""
    record = lookup_video(service, key, video_id)
    if record.status != "ready":
        detail = f": {record.error}" if record.error else ""
        raise HTTPException(409, f"video {video_id} is {record.status}{detail}")
    return record, service.layout.stream(record.id)


def _video_out(service: Service, record: VideoRecord) -> VideoOut:
    stream = None
    if record.status == "ready":
        stream = StreamInfoOut(**api.info(service.layout.stream(record.id)).to_json_dict())
    return VideoOut(
        id=record.id,
        status=record.status,
        progress=record.progress,
        codec=record.codec,
        model=record.model,
        quality=record.quality,
        frames=f"{record.frame_start}:{'' if record.frame_stop is None else record.frame_stop}",
        source_format=record.source_format,
        source_bytes=record.source_bytes,
        created_at=record.created_at,
        error=record.error,
        psnr_rgb=record.psnr_rgb,
        stream=stream,
    )


def _check_input(path: Path) -> str:
    """The input policy (``nvcodec.io.check_input``): the detected format, or 415 with its reason."""
    check = getattr(io, "check_input", None)  # the untrusted-input policy; absent in older trees
    try:
        detected = check(path) if check is not None else "unchecked"
    except InputError as exc:
        raise HTTPException(415, str(exc).replace(str(path), "the upload")) from None
    tokens = _FORMAT_TOKEN.findall(str(detected).lower())
    return tokens[0] if tokens else "bin"


def _check_limits(service: Service, path: Path, start: int, stop: int | None) -> None:
    """Frame size and count against --max-pixels / --max-frames before the job is queued (413)."""
    config = service.config
    try:
        probe = io.probe(path)
    except InputError as exc:
        raise HTTPException(415, str(exc).replace(str(path), "the upload")) from None
    if probe.width * probe.height > config.max_pixels:
        raise HTTPException(413, f"frame size {probe.width}x{probe.height} above --max-pixels {config.max_pixels}")
    if probe.num_frames:
        if start >= probe.num_frames:
            raise HTTPException(422, f"frames={start}:{stop or ''} starts past the input's {probe.num_frames} frames")
        count = min(stop if stop is not None else probe.num_frames, probe.num_frames) - start
        if count > config.max_frames:
            raise HTTPException(413, f"{count} frames above --max-frames {config.max_frames}; upload with frames=A:B")


async def _receive_body(request: Request, path: Path, limit: int) -> int:
    """Stream the request body into ``path``; 413 as soon as it passes ``limit`` bytes."""
    size = 0
    with open(path, "wb") as out:
        async for block in request.stream():
            size += len(block)
            if size > limit:
                raise HTTPException(413, f"upload larger than --max-upload-mb ({limit} bytes)")
            out.write(block)
    return size


@router.post("", status_code=202, response_model=VideoCreated, responses=ERROR_RESPONSES)
async def upload_video(
    request: Request,
    codec: Literal[CODEC_NAMES] = "intra",  # type: ignore[valid-type]  (Literal of the container's codec names)
    quality: int | None = None,
    frames: str | None = None,
    key: KeyRecord = Depends(require_key),
    service: Service = Depends(get_service),
) -> VideoCreated:
    """Store the raw body as a new video and queue its encode. The body is the video file itself."""
    config = service.config
    model = config.model_for(codec)
    levels = registry.get_spec(model).quality_levels
    if quality is not None and not 0 <= quality < levels:
        raise HTTPException(422, f"quality {quality} outside 0..{levels - 1} for {model}")
    try:
        frame_range = api.parse_frame_range(frames)
    except InputError as exc:
        raise HTTPException(422, str(exc)) from None
    start = 0 if frame_range is None else frame_range.start
    stop = None if frame_range is None else frame_range.stop
    if stop is not None and stop - start > config.max_frames:
        raise HTTPException(413, f"frames={frames} selects {stop - start} frames, above --max-frames {config.max_frames}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > config.max_upload_bytes:
        raise HTTPException(413, f"upload of {declared} bytes larger than --max-upload-mb ({config.max_upload_bytes} bytes)")
    if not service.pool.reserve():
        raise HTTPException(
            503, f"the encode queue is full ({service.pool.capacity} jobs); retry later",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    video_id = new_video_id()
    partial = service.layout.tmp / f"{video_id}.upload"
    stored: Path | None = None
    try:
        size = await _receive_body(request, partial, config.max_upload_bytes)
        if size == 0:
            raise HTTPException(415, "the body is empty: send the video file as the request body")
        source_format = await run_in_threadpool(_check_input, partial)
        stored = service.layout.upload(video_id, source_format)
        os.replace(partial, stored)
        await run_in_threadpool(_check_limits, service, stored, start, stop)
        await run_in_threadpool(
            service.catalogue.add_video, video_id=video_id, key_id=key.id, codec=codec, model=model, quality=quality,
            frame_start=start, frame_stop=stop, source_format=source_format, source_bytes=size, run_id=service.run_id,
        )
    except BaseException:
        partial.unlink(missing_ok=True)
        if stored is not None:
            stored.unlink(missing_ok=True)
        service.pool.release()
        raise
    record = service.catalogue.video(video_id)
    service.pool.submit(service.job_for(record, stored))
    return VideoCreated(id=video_id, status="queued")


@router.get("", response_model=VideoList, responses=ERROR_RESPONSES)
async def list_videos(key: KeyRecord = Depends(require_key), service: Service = Depends(get_service)) -> VideoList:
    records = service.catalogue.videos(key.id)
    return VideoList(videos=await run_in_threadpool(lambda: [_video_out(service, r) for r in records]))


@router.get("/{video_id}", response_model=VideoOut, responses=ERROR_RESPONSES)
async def get_video(video_id: str, key: KeyRecord = Depends(require_key), service: Service = Depends(get_service)) -> VideoOut:
    record = lookup_video(service, key, video_id)
    return await run_in_threadpool(_video_out, service, record)


def parse_byte_range(header: str, size: int) -> tuple[int, int]:
    """``bytes=A-B`` / ``bytes=A-`` / ``bytes=-N`` -> [start, end) within ``size``; else 416."""
    units, _, spec = header.partition("=")
    first, dash, last = spec.strip().partition("-")
    if units.strip().lower() != "bytes" or not dash or not (first or last) or not all(
        part.isascii() and part.isdigit() for part in (first, last) if part
    ):
        raise _unsatisfiable(f"Range {header!r} not understood: use one range, bytes=A-B, bytes=A- or bytes=-N", size)
    if not first:  # the last N bytes
        if int(last) == 0:
            raise _unsatisfiable(f"Range {header!r} asks for no bytes", size)
        return max(size - int(last), 0), size
    start = int(first)
    if last and int(last) < start:
        raise _unsatisfiable(f"Range {header!r} ends before it starts", size)
    if start >= size:
        raise _unsatisfiable(f"Range {header!r} starts past the stream's {size} bytes", size)
    return start, min(int(last) + 1, size) if last else size


def _unsatisfiable(message: str, size: int) -> HTTPException:
    return HTTPException(416, message, headers={"Content-Range": f"bytes */{size}"})


def _file_blocks(handle, start: int, end: int) -> Iterator[bytes]:
    with handle:
        handle.seek(start)
        remaining = end - start
        while remaining > 0:
            block = handle.read(min(_STREAM_BLOCK, remaining))
            if not block:
                return
            remaining -= len(block)
            yield block


@router.get("/{video_id}/stream", responses={**ERROR_RESPONSES, 206: {"description": "the requested byte range"}})
async def get_stream(
    video_id: str, request: Request, key: KeyRecord = Depends(require_key), service: Service = Depends(get_service)
) -> Response:
    """The ``.nvc`` bytes; a ``Range: bytes=...`` header gets 206 with that part."""
    _, path = ready_stream(service, key, video_id)
    try:
        handle = open(path, "rb")  # opened now: a delete after this still serves the whole file
    except FileNotFoundError:
        raise HTTPException(404, f"no video {video_id!r}") from None
    size = os.fstat(handle.fileno()).st_size
    headers = {"Accept-Ranges": "bytes", "Content-Disposition": f'attachment; filename="{video_id}.nvc"'}
    start, end, status = 0, size, 200
    byte_range = request.headers.get("range")
    if byte_range is not None:
        try:
            start, end = parse_byte_range(byte_range, size)
        except HTTPException:
            handle.close()
            raise
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    headers["Content-Length"] = str(end - start)
    return StreamingResponse(_file_blocks(handle, start, end), status_code=status, headers=headers, media_type="application/octet-stream")


@router.delete("/{video_id}", status_code=204, responses=ERROR_RESPONSES)
async def delete_video(video_id: str, key: KeyRecord = Depends(require_key), service: Service = Depends(get_service)) -> Response:
    """Delete the video, its stream and its upload; a running encode stops."""
    lookup_video(service, key, video_id)
    if not await run_in_threadpool(service.catalogue.delete_video, video_id, key.id):
        raise HTTPException(404, f"no video {video_id!r}")
    await run_in_threadpool(service.delete_files, video_id)
    return Response(status_code=204)


def decode_error(video_id: str, exc: Exception) -> HTTPException:
    """A stored stream that can't be read: deleted meanwhile (404) or damaged on disk (500)."""
    if isinstance(exc, FileNotFoundError):
        return HTTPException(404, f"no video {video_id!r}")
    assert isinstance(exc, NvcodecError)
    return HTTPException(500, f"stored stream of video {video_id} cannot be decoded: {exc}")
