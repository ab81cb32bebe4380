"""``RemoteRegistry``: a tracking server's model registry, with ``ModelRegistry``'s calls (what
``tracklet.Api(base_url=...)``, an online run's ``link_artifact`` and ``tracklet registry --url``
use). Requests go through ``tracklet.client.registry``; the server applies the same rules in its
own database (``server/routes_registry.py``)."""

from __future__ import annotations

import dataclasses

from typing import Any

from tracklet.artifacts.names import LATEST
from tracklet.client.registry import RegistryClient
from tracklet.errors import RegistryError
from tracklet.registry.sql import DEFAULT_APPROVER_ROLE, AliasEvent, Card, Link, PromotionRequest, Protection


def link_of(document: dict[str, Any]) -> Link:
    fields = {key: document[key] for key in Link.__dataclass_fields__ if key in document}
    return Link(**fields)


class RemoteRegistry:
    """The registry of the server ``client`` talks to."""

    def __init__(self, client: RegistryClient) -> None:
        self.client = client

    def link(self, registry: str, collection: str, source: Any, aliases: list[str] | tuple[str, ...] = (), *,
             actor: str | None = None, reason: str | None = None) -> Link:
        """Link the server's version ``source`` (project, name, version, digest); ``actor`` is the
        key's user on a server, whatever is passed."""
        return link_of(self.client.link(registry, collection, {
            "project": source.project, "name": source.name, "version": source.version, "digest": source.digest,
            "aliases": list(aliases), "reason": reason or ""})["link"])

    def resolve_document(self, registry: str, collection: str, selector: str = LATEST) -> dict[str, Any]:
        return self.client.version(registry, collection, selector)

    def resolve(self, registry: str, collection: str, selector: str = LATEST) -> Link:
        return link_of(self.client.version(registry, collection, selector)["link"])

    def versions(self, registry: str, collection: str, **_: Any) -> list[Link]:
        return [link_of(document) for document in self.client.versions(registry, collection)]

    def links_to(self, project: str, name: str, version: int, **_: Any) -> list[Link]:
        """The registry versions linking artifact version ``project/name:v<version>`` that the
        caller may read (``ModelRegistry.links_to``'s, over the server)."""
        return [link_of(document) for document in self.client.version_links(project, name, version)]

    def collections(self, registry: str | None = None) -> list[dict[str, Any]]:
        return self.client.collections(registry)

    def set_alias(self, registry: str, collection: str, alias: str, selector: str, *, actor: str | None = None,
                  reason: str | None = None) -> AliasEvent | None:
        event = self.client.set_alias(registry, collection, alias, selector, reason)["event"]
        return AliasEvent(**event) if event else None

    def remove_alias(self, registry: str, collection: str, alias: str, *, expected: int | None = None,
                     unconditional: bool = False, actor: str | None = None,
                     reason: str | None = None) -> AliasEvent | None:
        """``ModelRegistry.remove_alias`` on the server: removed only if the alias still names
        version ``expected`` when the server's transaction runs (``AliasMoved`` otherwise, and
        nothing changes); ``unconditional=True`` removes it wherever it points."""
        if expected is None and not unconditional:
            raise RegistryError(f"removing alias {alias!r} of {registry}/{collection}: name the version you read it "
                                "on (expected=N), or pass unconditional=True to remove it wherever it points now")
        event = self.client.set_alias(registry, collection, alias, None, reason, expected=expected)["event"]
        return AliasEvent(**event) if event else None

    def save_aliases(self, registry: str, collection: str, version: int, added: list[str] | tuple[str, ...] = (),
                     removed: list[str] | tuple[str, ...] = (), *, actor: str | None = None,
                     reason: str | None = None) -> list[AliasEvent]:
        """``ModelRegistry.save_aliases`` on the server (one transaction there, with its role
        checks and audit); ``actor`` is the key's user, whatever is passed."""
        answer = self.client.save_aliases(registry, collection, version, list(added), list(removed), reason)
        return [AliasEvent(**event) for event in answer["events"]]

    def unlink(self, registry: str, collection: str, version: int, *, actor: str | None = None,
               reason: str | None = None) -> list[AliasEvent]:
        """``ModelRegistry.unlink`` on the server (its member role, its audit); ``actor`` is the
        key's user, whatever is passed."""
        return [AliasEvent(**event) for event in self.client.unlink(registry, collection, version, reason)["events"]]

    def history(self, registry: str, collection: str, alias: str | None = None, **_: Any) -> list[AliasEvent]:
        return [AliasEvent(**event) for event in self.client.history(registry, collection, alias)]

    def card(self, registry: str, collection: str, version: int, revision: int | None = None) -> Card | None:
        document = self.client.card(registry, collection, f"v{version}")["card"]
        return Card(**document) if document else None

    def save_card(self, registry: str, collection: str, version: int, text: str, *,
                  author: str | None = None) -> Card:
        return Card(**self.client.save_card(registry, collection, f"v{version}", text)["card"])

    def protect(self, registry: str, collection: str, alias: str, approvals: int = 1, *,
                approver_role: str = DEFAULT_APPROVER_ROLE, check: int | None = None,
                check_timeout: float | None = None) -> Protection | None:
        """Require ``approvals`` approvals from holders of ``approver_role`` (or a higher registry
        role) to move ``alias``; ``check``: a webhook automation's id that must answer 2xx, within
        ``check_timeout`` seconds (the server's default: 10), before a promotion completes. The
        policy it replaced is in the server's audit log (``detail.previous``); returns None."""
        self.client.protect(registry, collection, alias, approvals, check, check_timeout, approver_role)
        return None

    def protections(self, registry: str, collection: str) -> dict[str, Protection]:
        """The collection's protected aliases with their policies (``Protection``; the server's
        answer also names each one's webhook check: ``client.protections``)."""
        return {item["alias"]: Protection(item["alias"], item["approvals"], item.get("approver_role",
                                                                                     DEFAULT_APPROVER_ROLE))
                for item in self.client.protections(registry, collection)}

    def members(self, registry: str) -> list[dict[str, str]]:
        """``[{user, role}]`` of ``registry`` (registry roles: viewer, member, admin)."""
        return self.client.members(registry)

    def set_member(self, registry: str, user: str, role: str | None) -> list[dict[str, str]]:
        """Give ``user`` ``role`` in ``registry``, or take it (None); the members after."""
        return self.client.set_member(registry, user, role)

    def requests(self, registry: str | None = None, collection: str | None = None, *,
                 state: str | None = "pending") -> list[PromotionRequest]:
        found = [_promotion(document) for document in self.client.requests(registry, state)]
        return [request for request in found if collection is None or request.collection == collection]

    def review(self, request_id: int, decision: str, *, reviewer: str | None = None,
               comment: str | None = None) -> PromotionRequest:
        return _promotion(self.client.review(request_id, decision, comment)["request"])


def _promotion(document: dict[str, Any]) -> PromotionRequest:
    """A request as the server answers it, less what the server adds for its caller (``role``)."""
    fields = {field.name for field in dataclasses.fields(PromotionRequest)}
    return PromotionRequest(**{name: value for name, value in document.items() if name in fields})
