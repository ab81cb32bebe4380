"""Request parameters that several routers parse the same way, parsed in one place so that each
answers the same 400 for the same mistake."""

from __future__ import annotations

from fastapi import HTTPException

from tracklet.artifacts.names import version_number


def version_param(version: str) -> int:
    """N of a ``vN`` path segment or query value: routes that change one exact version (an
    artifact's or a registry collection's) take nothing else, so an alias or ``latest`` is a 400
    naming what was sent (its first 100 characters)."""
    number = version_number(version)
    if number is None:
        raise HTTPException(status_code=400, detail=f"name the version as vN; got {version[:100]!r}")
    return number
