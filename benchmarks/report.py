"""How every benchmark prints its results: one aligned table, and optionally the raw numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence


def print_table(rows: Sequence[Sequence[Any]], header: Sequence[str] | None = None) -> None:
    """Rows of cells: the first column left-aligned, the middle ones right-aligned, and a last
    column (in rows of three or more) left-aligned, as for a target or a note."""
    table = [list(map(str, header))] if header else []
    table += [[str(cell) for cell in row] for row in rows]
    columns = max(len(row) for row in table)
    widths = [max(len(row[i]) for row in table if i < len(row)) for i in range(columns)]
    for row in table:
        cells = []
        for i, cell in enumerate(row):
            last = i == len(row) - 1 and i >= 2
            cells.append(cell.ljust(widths[i]) if i == 0 or last else cell.rjust(widths[i]))
        print("  ".join(cells).rstrip())


def write_json(path: Path | None, results: Any) -> None:
    """Also write the results as JSON when ``--json PATH`` was given."""
    if path is not None:
        Path(path).write_text(json.dumps(results, indent=2))
