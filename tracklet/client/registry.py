"""The model registry's HTTP calls (``/api/v1/registries/...``, ``server/routes_registry.py``):
JSON in, JSON out. ``tracklet.registry.remote`` turns the answers into links and artifacts.

A refusal maps to tracklet's errors: 404 ``ArtifactNotFound``, 409 ``PromotionRequired`` (a
protected alias: the request that was opened is in the detail; or a failed webhook check), 412
``AliasMoved`` (a conditional removal whose alias moved meanwhile), 400 ``RegistryError``; 401, 403 and the rest as ``HttpClient`` says (a ``RemoteError``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from tracklet.client.http import HttpClient, response_detail
from tracklet.errors import AliasMoved, ArtifactNotFound, PromotionRequired, PromotionReviewRefused, RegistryError, RegistryForbidden


class RegistryClient:
    """Registry requests to one server, through its ``HttpClient``."""

    def __init__(self, http: HttpClient) -> None:
        self.http = http

    @staticmethod
    def _collection(registry: str, collection: str) -> str:
        return f"/api/v1/registries/{quote(registry, safe='')}/collections/{quote(collection, safe='')}"

    def _answer(self, response: Any, what: str) -> Any:
        if response.status_code == 200:
            return response.json()
        detail = response_detail(response)
        if response.status_code == 404:
            raise ArtifactNotFound(detail)
        if response.status_code == 409:
            found = re.search(r"request #(\d+)", detail)
            raise PromotionRequired(detail, int(found.group(1)) if found else None)
        if response.status_code == 400:
            raise RegistryError(detail)
        if response.status_code == 412:
            raise AliasMoved(detail)
        if response.status_code == 403:
            raise RegistryForbidden(str(self.http.refusal(response, what=what)))
        raise self.http.refusal(response, what=what)

    def _call(self, method: str, url: str, what: str, **kwargs: Any) -> Any:
        return self._answer(self.http.request(method, url, **kwargs), what)

    def link(self, registry: str, collection: str, document: dict[str, Any]) -> dict[str, Any]:
        """Link a version (``project``, ``name``, ``version``, ``digest``, ``aliases``, ``reason``)."""
        return self._call("POST", f"{self._collection(registry, collection)}/links", f"linking to {registry}/{collection}",
                          json=document)

    def version(self, registry: str, collection: str, selector: str) -> dict[str, Any]:
        """``{"link": ..., "version": <the source ArtifactVersion>}``."""
        return self._call("GET", f"{self._collection(registry, collection)}/versions/{quote(selector, safe='')}",
                          f"reading {registry}/{collection}:{selector}")

    def versions(self, registry: str, collection: str) -> list[dict[str, Any]]:
        return self._call("GET", f"{self._collection(registry, collection)}/versions",
                          f"listing {registry}/{collection}")["links"]

    def version_links(self, project: str, name: str, version: int) -> list[dict[str, Any]]:
        """The registry versions linking artifact version ``project/name:v<version>`` (those of
        registries the key's user may read)."""
        what = f"listing the registry links of {project}/{name}:v{int(version)}"
        response = self.http.request("GET", f"/api/v1/projects/{quote(project, safe='')}/artifacts/"
                                            f"{quote(name, safe='')}/versions/v{int(version)}/links")
        if response.status_code == 404 and response_detail(response) == "Not Found":  # no such route, not no version
            raise RegistryError(f"{what}: the server at {self.http.base_url} has no route for it (a tracklet server "
                                "older than this client): upgrade it")
        return self._answer(response, what)["links"]

    def collections(self, registry: str | None = None) -> list[dict[str, Any]]:
        return self._call("GET", "/api/v1/registries", "listing registries",
                          params={"registry": registry} if registry else {})["collections"]

    def set_alias(self, registry: str, collection: str, alias: str, selector: str | None,
                  reason: str | None = None, *, expected: int | None = None) -> dict[str, Any]:
        """Move ``alias`` to ``selector`` (None: remove it; with ``expected``, only if it still
        names ``vN``: ``AliasMoved`` otherwise); ``{"event": ... or null}``."""
        url = f"{self._collection(registry, collection)}/aliases/{quote(alias, safe='')}"
        if selector is None:
            params = {"reason": reason or "", **({"version": f"v{int(expected)}"} if expected is not None else {})}
            return self._call("DELETE", url, f"removing alias {alias}", params=params)
        return self._call("PUT", url, f"moving alias {alias}", json={"version": selector, "reason": reason or ""})

    def save_aliases(self, registry: str, collection: str, version: int, added: list[str], removed: list[str],
                     reason: str | None = None) -> dict[str, Any]:
        """Move version ``vN``'s aliases at once (all or nothing); ``{"events": [...]}``."""
        return self._call("POST", f"{self._collection(registry, collection)}/versions/v{int(version)}/aliases",
                          f"saving the aliases of {registry}/{collection}:v{int(version)}",
                          json={"add": list(added), "remove": list(removed), "reason": reason or ""})

    def unlink(self, registry: str, collection: str, version: int, reason: str | None = None) -> dict[str, Any]:
        """Remove version ``vN`` from the collection, its aliases first; ``{"events": [...]}``. A
        server older than the route (405) raises ``RegistryError`` saying so."""
        what = f"unlinking {registry}/{collection}:v{int(version)}"
        response = self.http.request("DELETE", f"{self._collection(registry, collection)}/versions/v{int(version)}",
                                     params={"reason": reason or ""})
        if response.status_code == 405:
            raise RegistryError(f"{what}: the server at {self.http.base_url} has no route to unlink a registry "
                                "version (a tracklet server older than this client): upgrade it; nothing was changed")
        return self._answer(response, what)

    def history(self, registry: str, collection: str, alias: str | None = None) -> list[dict[str, Any]]:
        params = {"alias": alias} if alias else {}
        return self._call("GET", f"{self._collection(registry, collection)}/history", "reading alias history",
                          params=params)["events"]

    def card(self, registry: str, collection: str, selector: str) -> dict[str, Any]:
        return self._call("GET", f"{self._collection(registry, collection)}/versions/{quote(selector, safe='')}/card",
                          "reading a model card")

    def save_card(self, registry: str, collection: str, selector: str, text: str) -> dict[str, Any]:
        return self._call("PUT", f"{self._collection(registry, collection)}/versions/{quote(selector, safe='')}/card",
                          "saving a model card", json={"text": text})

    def protect(self, registry: str, collection: str, alias: str, approvals: int,
                check: int | None = None, check_timeout: float | None = None,
                approver_role: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"approvals": approvals, **({"check": check} if check is not None else {}),
                                **({"check_timeout": check_timeout} if check_timeout is not None else {}),
                                **({"approver_role": approver_role} if approver_role is not None else {})}
        return self._call("PUT", f"{self._collection(registry, collection)}/protections/{quote(alias, safe='')}",
                          "protecting an alias", json=body)

    def protections(self, registry: str, collection: str) -> list[dict[str, Any]]:
        return self._call("GET", f"{self._collection(registry, collection)}/protections",
                          "reading protected aliases")["protections"]

    def members(self, registry: str) -> list[dict[str, str]]:
        return self._call("GET", f"/api/v1/registries/{quote(registry, safe='')}/members",
                          "listing registry members")["members"]

    def set_member(self, registry: str, user: str, role: str | None) -> list[dict[str, str]]:
        """Give ``user`` ``role`` in ``registry`` (None: take their role); the members after."""
        path = f"/api/v1/registries/{quote(registry, safe='')}/members/{quote(user, safe='')}"
        if role is None:
            return self._call("DELETE", path, "removing a registry member")["members"]
        return self._call("PUT", path, "setting a registry role", json={"role": role})["members"]

    def requests(self, registry: str | None = None, state: str | None = "pending") -> list[dict[str, Any]]:
        params = {key: value for key, value in (("registry", registry), ("state", state)) if value}
        return self._call("GET", "/api/v1/registry-requests", "listing promotion requests", params=params)["requests"]

    def review(self, request_id: int, decision: str, comment: str | None = None) -> dict[str, Any]:
        """``PromotionReviewRefused`` when the caller may not review it (their own request, or not
        the alias's approver role: the server's 403 and its reason)."""
        response = self.http.request("POST", f"/api/v1/registry-requests/{int(request_id)}/reviews",
                                     json={"decision": decision, "comment": comment or ""})
        if response.status_code == 403:
            raise PromotionReviewRefused(f"{self.http.base_url} refused the review (HTTP 403): "
                                         f"{response_detail(response)}")
        return self._answer(response, "reviewing a request")
