"""A JSON request body (a route's model parameter) is bounded before FastAPI reads and parses it
(``server/body.py``: ``BoundedBodyRoute``, ``MAX_JSON_BODY_BYTES``): 413 naming the limit, on the
wire and after gzip decoding; every route that takes one is covered, and ordinary bodies pass."""

from __future__ import annotations

import gzip
import json

import httpx

from tracklet.server.app import create_app
from tracklet.server.body import MAX_JSON_BODY_BYTES, BoundedBodyRoute


def _routes(routes):
    for route in routes:
        if type(route).__name__ == "_IncludedRouter":  # FastAPI's included router: its own routes
            yield from _routes(route.original_router.routes)
        elif getattr(route, "dependant", None) is not None:
            yield route


def test_every_route_that_takes_a_json_body_bounds_it(tmp_path):
    app = create_app(tmp_path / "root")
    with_body = [route for route in _routes(app.routes) if route.dependant.body_params]
    assert len(with_body) >= 25  # keys, sweeps, registry, reports, artifacts' queries and commits...
    unbounded = [f"{sorted(route.methods)} {route.path}" for route in with_body
                 if not isinstance(route, BoundedBodyRoute)]
    assert not unbounded, unbounded


def test_a_json_body_past_the_limit_is_refused_before_it_is_parsed(servers, tmp_path):
    server = servers(tmp_path / "server")
    url = f"{server.url}/api/v1/projects/p/artifacts/_chunks/missing"
    ids = ["a" * 64] * (MAX_JSON_BODY_BYTES // 67 + 1)  # past the limit by a few ids
    body = json.dumps({"chunks": ids}).encode()
    answer = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=60)
    assert answer.status_code == 413, answer.text[:300]
    assert answer.json()["detail"] == (f"request body too large: Content-Length {len(body)} is more than the server's "
                                       f"limit of {MAX_JSON_BODY_BYTES} bytes; a JSON body may take at most 8 MiB")
    # sent without a Content-Length (chunked): counted as it arrives
    answer = httpx.post(url, content=iter([body[:1 << 20], body[1 << 20:]]),
                        headers={"content-type": "application/json"}, timeout=60)
    assert answer.status_code == 413 and "the body is more than" in answer.json()["detail"]
    # a small gzip body that decodes past the limit
    bomb = gzip.compress(json.dumps({"chunks": ["0" * MAX_JSON_BODY_BYTES]}).encode())
    answer = httpx.post(url, content=bomb, headers={"content-type": "application/json", "content-encoding": "gzip"},
                        timeout=60)
    assert answer.status_code == 413 and "the decompressed body is more than" in answer.json()["detail"]
    # ordinary bodies: plain, and gzip (decoded within the limit)
    query = {"chunks": ["b" * 64, "c" * 64]}
    assert httpx.post(url, json=query, timeout=60).json() == {"missing": ["b" * 64, "c" * 64]}
    answer = httpx.post(url, content=gzip.compress(json.dumps(query).encode()), timeout=60,
                        headers={"content-type": "application/json", "content-encoding": "gzip"})
    assert answer.status_code == 200 and answer.json() == {"missing": ["b" * 64, "c" * 64]}
