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
    if name == "output.log":
        lines = run.console_logs()
        return BytesFile(name, lambda: _output_log(lines)) if lines else None
    produce = {"config.yaml": _config_yaml, "wandb-summary.json": _summary_json,
               "wandb-metadata.json": _metadata_json}[name]
    return BytesFile(name, lambda: produce(run))
