"""Where a run's files live under the data root.

``<root>/projects/<project>/runs/<run_id>/run.tlog`` is the record log; ``files/`` beside it holds
captured files (``diff.patch``, ``requirements.txt``). Project names and run ids are checked
(``settings.check_name``) before they become path parts.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tracklet.core.recordlog import LOG_FILE_NAME


@dataclasses.dataclass(frozen=True)
class RunPaths:
    root: Path
    project: str
    run_id: str

    @property
    def project_dir(self) -> Path:
        return project_dir(self.root, self.project)

    @property
    def run_dir(self) -> Path:
        return self.project_dir / "runs" / self.run_id

    @property
    def log_file(self) -> Path:
        return self.run_dir / LOG_FILE_NAME

    @property
    def files_dir(self) -> Path:
        return self.run_dir / "files"


def projects_dir(root: Path) -> Path:
    return root / "projects"


def project_dir(root: Path, project: str) -> Path:
    return projects_dir(root) / project
