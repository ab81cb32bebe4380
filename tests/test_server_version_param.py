"""Routes that change one exact version (an artifact's aliases and deletion; a registry version's
aliases, unlinking, an alias removed only from the version read) take it as ``vN`` only: an alias,
``latest`` or a malformed name answers 400 saying so, on a real server (``server/params.py``)."""

from __future__ import annotations

import httpx

_REGISTRY = "/api/v1/registries/models/collections/m"
_ROUTES = [
    ("POST", "/api/v1/projects/p/artifacts/data/versions/{version}/aliases", {"json": {"add": ["best"]}}),
    ("DELETE", "/api/v1/projects/p/artifacts/data/versions/{version}", {}),
    ("POST", _REGISTRY + "/versions/{version}/aliases", {"json": {"add": ["best"]}}),
    ("DELETE", _REGISTRY + "/versions/{version}", {}),
    ("DELETE", _REGISTRY + "/aliases/best?version={version}", {}),
]


def test_a_version_route_refuses_anything_but_vn(servers, tmp_path):
    server = servers(tmp_path / "server")
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for version in ("latest", "best", "v", "v1x", "x" * 300):
            for method, path, body in _ROUTES:
                if "?" in path and len(version) > 32:  # the query parameter's own limit: 422
                    continue
                answer = http.request(method, path.format(version=version), **body)
                assert answer.status_code == 400, (method, path, version, answer.text)
                assert answer.json()["detail"] == f"name the version as vN; got {version[:100]!r}", (method, path)
