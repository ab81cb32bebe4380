"""The files every W&B run has, made from what tracklet recorded, so a notebook that reads them
through ``wandb.Api().run(path).file(name)`` (or downloads all of ``run.files()``) works unchanged:

- ``config.yaml``: the config as wandb-core writes it, ``{key: {value: v}}`` (keys sorted);
- ``wandb-summary.json``: the summary as W&B's JSON (media, tables, histograms as ``run.summary``
  shows them);
- ``wandb-metadata.json``: ``run.metadata`` (W&B's keys among tracklet's: :func:`wandb_metadata`);
- ``output.log``: what the run's process wrote to stdout and stderr, one line each (listed only
  when it wrote something, as W&B uploads none then).

They are made when read, from the data root or from the server the run was read from; a file
the run saved itself under one of these names (``wandb.save("config.yaml")``) wins."""

from __future__ import annotations

import json
import os
from typing import Any

from tracklet.compat.wandb.apis._media_json import BytesFile

NAMES = ("config.yaml", "output.log", "wandb-metadata.json", "wandb-summary.json")


def wandb_metadata(metadata: dict[str, Any], created_at: str | None) -> dict[str, Any]:
    """``metadata`` with W&B's names for what tracklet records under its own (W&B's
    ``wandb-metadata.json``): ``program`` (the script as started, ``sys.argv[0]``), ``args`` (the
    rest of ``sys.argv``), ``startedAt``, ``gpu`` and ``gpu_count``, ``memory.total``,
    ``cudaVersion``. A key tracklet already has (``host``, ``os``, ``python``, ``git``,
    ``executable``, ``cpu_count``, ``username``) keeps tracklet's value."""
    found = dict(metadata)
    command = metadata.get("command") or []
    if len(command) > 1:  # [sys.executable, *sys.argv], redacted
        found.setdefault("program", command[1])
        found.setdefault("args", list(command[2:]))
    if created_at is not None:
        found.setdefault("startedAt", created_at)
    gpus = metadata.get("gpus") or []
    if gpus:
        found.setdefault("gpu", gpus[0] if isinstance(gpus[0], str) else str(gpus[0]))
        found.setdefault("gpu_count", len(gpus))
    if metadata.get("memory_total_bytes") is not None:
        found.setdefault("memory", {"total": int(metadata["memory_total_bytes"])})
    if metadata.get("cuda_version"):
        found.setdefault("cudaVersion", metadata["cuda_version"])
    return found


def _json_ready(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _config_yaml(run: Any) -> bytes:
    import yaml  # type: ignore[import-untyped]  # a dependency of tracklet

    config = _json_ready(run._recorded.config)
    return yaml.safe_dump({key: {"value": value} for key, value in config.items()}, sort_keys=True,
                          default_flow_style=False, allow_unicode=True).encode()


def _summary_json(run: Any) -> bytes:
    return json.dumps(run._summary_view(run._recorded), default=str).encode()


def _metadata_json(run: Any) -> bytes:
    return json.dumps(run.metadata, default=str, indent=4).encode()


def _output_log(lines: Any) -> bytes:
    return "".join(f"{line.content}\n" for line in lines).encode()


def wandb_file(run: Any, name: str) -> BytesFile | None:
    """The W&B file ``name`` (one of :data:`NAMES`) of ``run`` (``wandb.Api``'s ``Run``); None for
    ``output.log`` when the run wrote nothing to its console."""
    if name == "output.log":  # listed when there is a line; all of them read only when downloaded
        return BytesFile(name, lambda: _output_log(run.console_logs())) if run.console_logs(last=1) else None
    produce = {"config.yaml": _config_yaml, "wandb-summary.json": _summary_json,
               "wandb-metadata.json": _metadata_json}[name]
    return BytesFile(name, lambda: produce(run))


def upload(recorded: Any, path: str, root: str = ".") -> str:
    """W&B's ``run.upload_file(path, root)``: the file at ``path`` added to the run's files under
    its path relative to ``root`` (``ValueError`` when that leads outside ``root``), into the
    run's ``files/`` (written whole, then renamed into place) or, for a run read from a server,
    to the server's copy (``PUT .../files/<name>``, as ``tracklet sync`` sends files; the
    project's write role). Returns the name."""
    from tracklet.compat.wandb.apis._media_json import download_target
    from tracklet.compat.wandb.errors import CommError

    source = os.path.abspath(path)
    if not os.path.isfile(source):
        raise ValueError(f"run.upload_file({path!r}): no such file")
    name = os.path.relpath(source, os.path.abspath(root)).replace(os.sep, "/")
    try:
        download_target(".", name)
    except ValueError:
        raise ValueError(f"run.upload_file({path!r}, root={root!r}): the file is not under root; pass the folder "
                         "it is in (or one above it) as root") from None
    if hasattr(recorded, "dir"):  # a data root's run: its files/
        import shutil

        target = os.path.join(recorded.dir, "files", *name.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        partial = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.partial")
        shutil.copyfile(source, partial)
        os.replace(partial, target)
        return name
    from pathlib import Path
    from urllib.parse import quote

    from tracklet.client.files import GzipBody, _sha256_of
    from tracklet.client.http import response_detail

    sha256, _, _ = _sha256_of(Path(source))
    response = recorded._http.request(
        "PUT", f"/api/v1/runs/{recorded.path}/files/{quote(name, safe='/')}", content=GzipBody(Path(source)),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/octet-stream", "X-Tracklet-Sha256": sha256})
    if response.status_code != 200:
        raise CommError(f"run.upload_file({path!r}): the server refused file {name!r} of {recorded.path} "
                        f"(HTTP {response.status_code}: {response_detail(response)})")
    return name


def refuse_delete(name: str) -> None:
    """W&B's ``File.delete()`` is refused: ``UnsupportedError`` naming the file."""
    from tracklet.compat.wandb.errors import UnsupportedError

    raise UnsupportedError(
        f"File.delete() is not supported by tracklet: a run's files are kept with its record ({name!r} stays; "
        "requirements.txt, diff.patch and the code snapshot are what `tracklet reproduce` reads, and W&B's "
        "config.yaml, wandb-summary.json, wandb-metadata.json, output.log and media files are made from the "
        "record). Remove a file you saved yourself from the run's files/ directory by hand.")
