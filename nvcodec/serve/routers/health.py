"""``GET /v1/health`` (no key needed) and the web page at ``/``."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse

from nvcodec import __version__
from nvcodec.serve.auth import get_service
from nvcodec.serve.schemas import CacheOut, HealthOut
from nvcodec.serve.service import Service

__all__ = ["router"]

router = APIRouter()

PAGE = Path(__file__).resolve().parents[1] / "static" / "index.html"


@router.get("/v1/health", response_model=HealthOut, tags=["health"])
async def health(service: Service = Depends(get_service)) -> HealthOut:
    """Liveness, pool and cache figures; no key needed and nothing about anyone's videos."""
    return HealthOut(
        status="ok",
        version=__version__,
        workers=service.config.workers,
        queue_limit=service.config.queue_limit,
        jobs_in_flight=service.pool.in_flight,
        cache=CacheOut(**vars(service.frames.cache.stats())),
    )


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    """The one-file web page: paste a key, upload, watch progress, scrub frames."""
    return FileResponse(PAGE, media_type="text/html")
