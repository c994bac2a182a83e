"""The HTTP representation service (``nvcodec serve``): upload a video once, fetch any frame or range."""

from __future__ import annotations

__all__ = ["ServeConfig", "create_app", "run"]


def __getattr__(name: str):
    # FastAPI and uvicorn load only when the server is wanted (`nvcodec keys` needs neither).
    if name == "ServeConfig":
        from nvcodec.serve.config import ServeConfig

        return ServeConfig
    if name in ("create_app", "run"):
        from nvcodec.serve import app

        return getattr(app, name)
    raise AttributeError(f"module 'nvcodec.serve' has no attribute {name!r}")
