"""Who ran a run: ``RunUser``, as ``tracklet.Api`` run objects give it (``run.user``).

A run kept in a data root carries the OS user name its process ran as, in its metadata
(``metadata["username"]``, W&B's name for it): what the machine said, which nobody checked, so
``verified`` is False. A tracking server with API keys records the user behind the key that started
the run's upload (``tracklet/server/run_creators.py``): ``verified`` is True.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class RunUser:
    """The user who created a run: ``name``, and whether a server authenticated it (``verified``)."""

    name: str
    verified: bool = False

    @classmethod
    def from_json(cls, data: Any) -> RunUser | None:
        """A server's ``user`` object (``{"name", "verified"}``), or None for anything else (null)."""
        if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
            return None
        return cls(name=data["name"], verified=data.get("verified") is True)

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> RunUser | None:
        """The OS user name a run's process recorded (``metadata["username"]``), unverified; None without one."""
        name = metadata.get("username")
        return cls(name=name) if isinstance(name, str) and name else None
