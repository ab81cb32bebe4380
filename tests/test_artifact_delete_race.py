"""Deleting an artifact version races a model registry link of it: whichever commits first wins and
the other is refused, so a registry version never links a deleted artifact version (whose files a
garbage collection would take). Real concurrency: two threads against a real server (SQLite and
PostgreSQL), and two threads on a data root's store (``tracklet artifact rm`` and a local link). A
deletion that breaks registry links (``break_registry_links``) always wins, and names exactly the
links that committed before it: a link either lost (404) or is named, and reads back as files deleted."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from conftest import QUIET
from races import race

import tracklet
from tracklet.errors import ArtifactError, ArtifactNotFound

ROUNDS = 12




def _server_with_versions(servers, tmp_path, request, database: str):
    """A ``--dev`` server (SQLite or PostgreSQL store) where an online run logged ``vision/m``
    v0..v(ROUNDS-1)."""
    store_url = request.getfixturevalue("pg_url") if database == "postgresql" else None
    server = servers(tmp_path / "server", store=store_url)
    run = tracklet.init(project="vision", dir=str(tmp_path / "writer"), mode="online",
                        settings={**QUIET, "base_url": server.url})
    for index in range(ROUNDS):
        (tmp_path / "m.bin").write_bytes(b"content %d" % index)
        assert run.log_artifact(tmp_path / "m.bin", name="m", type="model").wait().upload_error is None
    run.finish()
    return server


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_servers_version_is_never_deleted_under_a_registry_link_made_at_the_same_moment(servers, tmp_path, request,
                                                                                         database):
    server = _server_with_versions(servers, tmp_path, request, database)

    clients = [httpx.Client(base_url=server.url, timeout=60), httpx.Client(base_url=server.url, timeout=60)]
    outcomes = []
    for number in range(ROUNDS):
        def link(number=number) -> bool:
            response = clients[0].post("/api/v1/registries/model/collections/m/links",
                                       json={"project": "vision", "name": "m", "version": number})
            assert response.status_code in (200, 404), response.text
            return response.status_code == 200

        def delete(number=number) -> bool:
            response = clients[1].delete(f"/api/v1/projects/vision/artifacts/m/versions/v{number}")
            assert response.status_code in (200, 409), response.text
            assert response.status_code == 200 or "is registered as model/m:v" in response.json()["detail"]
            return response.status_code == 200

        outcomes.append(race(link, delete))
    for client in clients:
        client.close()

    assert all(linked != deleted for linked, deleted in outcomes), outcomes  # exactly one of the two, each round
    with httpx.Client(base_url=server.url) as http:
        answer = http.get("/api/v1/registries/model/collections/m/versions")  # 404: every deletion won
        links = answer.json()["links"] if answer.status_code != 404 else []
        for link in links:  # the invariant: every registry version's artifact version exists
            source = f"/api/v1/projects/vision/artifacts/m/versions/v{link['source_version']}"
            assert http.get(source).status_code == 200, link
    assert len(links) == sum(linked for linked, _ in outcomes)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_deletion_breaking_registry_links_names_every_link_made_at_the_same_moment(servers, tmp_path, request,
                                                                                    database):
    server = _server_with_versions(servers, tmp_path, request, database)

    clients = [httpx.Client(base_url=server.url, timeout=60), httpx.Client(base_url=server.url, timeout=60)]
    outcomes = []
    broken: list[str] = []
    for number in range(ROUNDS):
        def link(number=number) -> bool:
            response = clients[0].post("/api/v1/registries/model/collections/m/links",
                                       json={"project": "vision", "name": "m", "version": number})
            assert response.status_code in (200, 404), response.text
            return response.status_code == 200

        def delete(number=number) -> bool:
            response = clients[1].delete(f"/api/v1/projects/vision/artifacts/m/versions/v{number}",
                                         params={"break_registry_links": "true"})
            assert response.status_code == 200, response.text
            broken.extend(response.json()["registry_links_broken"])
            return True

        outcomes.append(race(link, delete))
    for client in clients:
        client.close()

    assert all(deleted for _, deleted in outcomes), outcomes
    with httpx.Client(base_url=server.url) as http:
        answer = http.get("/api/v1/registries/model/collections/m/versions")
        links = answer.json()["links"] if answer.status_code != 404 else []
        assert len(links) == sum(linked for linked, _ in outcomes)  # a link that lost made nothing
        assert sorted(broken) == sorted(link["path"] for link in links)  # each one that won is named
        for link in links:  # and reads back as files deleted
            read = http.get(f"/api/v1/registries/model/collections/m/versions/v{link['version']}")
            assert read.status_code == 200 and read.json()["files_deleted"] is True, read.text


def test_a_data_roots_version_is_never_deleted_under_a_registry_link_made_at_the_same_moment(tmp_path):
    """``tracklet artifact rm``'s deletion (``lookup.delete_version``) and a local link."""
    from tracklet.artifacts.lookup import delete_version
    from tracklet.registry.service import open_local

    root = tmp_path / "root"
    run = tracklet.init(project="vision", dir=str(root), settings=QUIET)
    logged = []
    for index in range(ROUNDS):
        (tmp_path / "m.bin").write_bytes(b"content %d" % index)
        logged.append(run.log_artifact(tmp_path / "m.bin", name="m", type="model").wait())
    run.finish()

    outcomes = []
    for artifact in logged:
        info = artifact._info

        def link(artifact=artifact) -> bool:
            try:
                artifact.link("model/m")
            except ArtifactNotFound:
                return False
            return True

        def delete(info=info) -> bool:
            try:
                delete_version(root, info)
            except ArtifactError as error:
                assert "is registered as model/m:v" in str(error)
                return False
            return True

        outcomes.append(race(link, delete))

    assert all(linked != deleted for linked, deleted in outcomes), outcomes
    registry = open_local(Path(root), create=False)
    assert registry is not None
    api = tracklet.Api(root)
    links = registry.versions("model", "m") if registry.has_collection("model", "m") else []  # every deletion won
    for item in links:
        assert api.artifact(f"vision/m:v{item.source_version}").version == f"v{item.source_version}", item
    assert len(links) == sum(linked for linked, _ in outcomes)
