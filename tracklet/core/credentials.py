"""API keys saved by ``tracklet login``, one per server URL.

``<user config dir>/tracklet/credentials.json`` (``~/.config/tracklet`` on Linux) maps a server's
base URL to the key for it. The file is created readable by its owner only, and written whole
through a temporary file so a crash never leaves half of it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tracklet.core.atomicfile import replace_atomically

API_KEY_ENV = "TRACKLET_API_KEY"


def credentials_file() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("tracklet", appauthor=False)) / "credentials.json"


def _normalize(base_url: str) -> str:
    return base_url.strip().rstrip("/")


def _read(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not a tracklet credentials file ({error}); delete it and run `tracklet login`") from None
    return {str(url): str(key) for url, key in data.items()} if isinstance(data, dict) else {}


def saved_key(base_url: str) -> str | None:
    """The key ``tracklet login`` saved for ``base_url``, if any."""
    return _read(credentials_file()).get(_normalize(base_url))


def save_key(base_url: str, key: str) -> Path:
    """Remember ``key`` for ``base_url`` (replacing an older one); returns the file."""
    path = credentials_file()
    data = _read(path)
    data[_normalize(base_url)] = key
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(path, json.dumps(data, indent=2, sort_keys=True).encode(), mode=0o600)
    return path


def unauthorized_hint(base_url: str) -> str:
    """What to add to a 401's message: how to give the client a key for ``base_url``."""
    return f"; set TRACKLET_API_KEY or run `tracklet login --url {base_url}`"


def resolve_key(base_url: str, explicit: str | None = None) -> str | None:
    """The key to send to ``base_url``: ``explicit``, else ``$TRACKLET_API_KEY``, else the saved one."""
    return explicit or os.environ.get(API_KEY_ENV) or saved_key(base_url)
