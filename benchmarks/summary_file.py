"""summary.json: written only when it keeps every sample the file already had.

A summary is recomputed from the records. If it would hold fewer samples than the file on disk, the records
lost something (or are not the run the file describes): replacing the file would throw away the only good
copy of the numbers, so it is refused unless the user says ``--force``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from refine_agent.errors import InputError
from refine_agent.outputs import write_json
from refine_agent.textio import read_text


class SummaryShrinks(InputError):
    """The new summary has fewer samples than the summary.json it would replace."""


def samples_in(summary: dict[str, Any]) -> int:
    return int(summary.get("n_samples") or 0)  # every sample record, errors included


def check_no_shrink(path: Path, n_samples: int, *, force: bool = False) -> None:
    """Refuse to replace ``path`` by a summary of ``n_samples`` when it holds more (checked before any work)."""
    if force or not path.exists():
        return
    try:
        old = json.loads(read_text(path))
    except (OSError, ValueError, RecursionError):
        return  # a damaged summary is no result to keep; the records are
    if isinstance(old, dict) and samples_in(old) > n_samples:
        raise SummaryShrinks(f"{path} holds {samples_in(old)} samples but the records now give {n_samples}; not "
                             "replacing it. Check the run directory, or rerun 'refine-agent report RUN_DIR --force' "
                             "to replace it")


def save_summary(path: Path, summary: dict[str, Any], *, force: bool = False) -> Path:
    check_no_shrink(path, samples_in(summary), force=force)
    write_json(path, summary)
    return path
