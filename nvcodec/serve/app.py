"""The FastAPI application and ``run`` (uvicorn). Errors are one-line JSON: ``{"error": "..."}``."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from nvcodec import __version__
from nvcodec.serve.config import ServeConfig
from nvcodec.serve.routers import frames, health, videos
from nvcodec.serve.service import Service

__all__ = ["create_app", "run"]


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "path", "body"))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid")))
    return "bad parameter " + "; ".join(parts)


def create_app(config: ServeConfig) -> FastAPI:
    """The app for ``config``; the service (catalogue, pools, recovery) starts with the app's lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.service = Service(config)
        try:
            yield
        finally:
            app.state.service.close()

    app = FastAPI(
        title="nvcodec serve", version=__version__, lifespan=lifespan,
        description="Upload a video once as its neural representation; fetch any frame or range of it.",
    )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": _one_line(exc.detail)}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _one_line(_validation_message(exc))}, status_code=422)

    app.include_router(health.router)
    app.include_router(videos.router)
    app.include_router(frames.router)
    return app


def run(config: ServeConfig, log_level: str = "info") -> None:
    """Serve until interrupted (``nvcodec serve``)."""
    import uvicorn

    app = create_app(config)
    print(
        f"nvcodec serve: http://{config.host}:{config.port}/ (data {config.data}, {config.workers} encode worker(s))",
        file=sys.stderr, flush=True,
    )
    uvicorn.run(app, host=config.host, port=config.port, log_level=log_level, timeout_graceful_shutdown=5)
