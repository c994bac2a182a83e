"""The API-key dependency: ``Authorization: Bearer KEY`` -> the caller's key record, else 401."""

from __future__ import annotations

from fastapi import Depends, HTTPException, Request

from nvcodec.serve.catalogue import KeyRecord
from nvcodec.serve.service import Service

__all__ = ["get_service", "require_key"]

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def get_service(request: Request) -> Service:
    return request.app.state.service


async def require_key(request: Request, service: Service = Depends(get_service)) -> KeyRecord:
    header = request.headers.get("authorization")
    if not header:
        raise HTTPException(401, "missing Authorization: Bearer KEY header", headers=_CHALLENGE)
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise HTTPException(401, "the Authorization header must be 'Bearer KEY'", headers=_CHALLENGE)
    # A read: WAL readers never wait for the writer, so this may run on the event loop.
    record = service.catalogue.key_for(key.strip())
    if record is None:
        raise HTTPException(401, "unknown or revoked API key", headers=_CHALLENGE)
    return record
