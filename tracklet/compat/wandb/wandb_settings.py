"""``wandb.Settings``: accepts any W&B setting; the ones with a tracklet meaning are mapped in
``wandb.init`` (see :data:`MAPPED`), transport and UI knobs with no tracklet meaning are accepted
silently, and any other setting that is set is reported once as not supported."""

from __future__ import annotations

from typing import Any

# W&B setting -> what wandb.init does with it.
MAPPED = {
    "mode": "offline/online/disabled, as init(mode=)",
    "project": "init(project=)",
    "entity": "init(entity=)",
    "run_id": "init(id=)",
    "run_name": "init(name=)",
    "run_notes": "init(notes=)",
    "run_tags": "init(tags=)",
    "run_group": "init(group=)",
    "run_job_type": "init(job_type=)",
    "resume": "init(resume=)",
    "reinit": "init(reinit=)",
    "console": "'off' turns console capture off",
    "x_disable_stats": "True turns system metrics off",
    "_disable_stats": "True turns system metrics off",
    "disable_git": "True turns environment capture (git, packages) off",
    "x_disable_meta": "True turns environment capture off",
    "_disable_meta": "True turns environment capture off",
    "allow_val_change": "init(allow_val_change=)",
    "x_stats_sampling_interval": "seconds between system metrics points: settings system_window (sampled every 2 s)",
    "_stats_sample_rate_seconds": "as x_stats_sampling_interval",
    "code_dir": "with save_code: run.log_code(code_dir) too, as W&B's run start does",
    "x_primary": "False (with mode='shared') makes this process a secondary writer of run id=: settings primary=False",
    "x_label": "a secondary writer's label: settings label= (its part, its console and system metric tag)",
    "x_update_finish_state": "a secondary writer's end sets the shared run's state too unless False (W&B's "
                             "default True; settings update_finish_state; docs/shared-runs.md)",
}
# Settings about W&B's own service, login, network and terminal output: nothing to do here.
IGNORED = frozenset({
    "api_key", "base_url", "anonymous", "init_timeout", "start_method", "silent", "quiet", "show_info",
    "show_warnings", "show_errors", "show_emoji", "show_colors", "login_timeout", "x_service_wait",
    "_service_wait", "program", "program_relpath", "root_dir", "files_dir", "sync_dir", "heartbeat_seconds",
    "x_file_stream_timeout_seconds", "insecure_disable_ssl", "http_proxy", "https_proxy", "disable_job_creation",
    "x_disable_service", "_disable_service", "x_save_requirements", "save_code", "disable_code",
    "console_multipart",
    "force", "host", "username", "email", "notebook_name", "relogin", "identity_token_file", "credentials_file",
    "x_show_operation_stats", "max_end_of_run_history_metrics", "max_end_of_run_summary_metrics",
})


class Settings:
    """W&B run settings: ``wandb.Settings(mode="offline", console="off", ...)``; any keyword is
    kept and readable as an attribute (unset ones read as None)."""

    def __init__(self, **kwargs: Any) -> None:
        object.__setattr__(self, "_values", dict(kwargs))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._values.get(name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._values[name] = value

    def update(self, settings: "Settings | dict[str, Any] | None" = None, **kwargs: Any) -> None:
        self._values.update(as_dict(settings))
        self._values.update(kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def __repr__(self) -> str:
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in self._values.items())})"


def as_dict(settings: Any) -> dict[str, Any]:
    """The settings that were set, from a ``Settings``, a dict or None."""
    if settings is None:
        return {}
    if isinstance(settings, Settings):
        return settings.to_dict()
    if isinstance(settings, dict):
        return dict(settings)
    return {k: v for k, v in vars(settings).items() if not k.startswith("_")} if hasattr(settings, "__dict__") else {}
