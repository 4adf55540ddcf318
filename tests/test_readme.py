"""The README's Python analysis snippet runs as written, on a real exported run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .hostile.conftest import cli

README = Path(__file__).resolve().parents[1] / "README.md"


def _pandas_snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    return next(b for b in blocks if "import pandas" in b)


def test_the_pandas_snippet_runs_on_an_exported_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pandas", reason="the bench extra installs pandas")
    monkeypatch.chdir(tmp_path)  # the snippet reads runs/syn/..., as the tour writes it
    assert cli("bench", "synthetic", "--run-dir", "runs/syn", "--limit", "6", "--max-rounds", "1").exit_code == 0
    assert cli("export", "runs/syn", "--format", "parquet").exit_code == 0
    snippet = _pandas_snippet()
    scope: dict[str, object] = {}
    exec(compile(snippet, "README.md", "exec"), scope)  # noqa: S102 (our own README)
    assert "rounds" in scope and len(scope["rounds"]) >= 6  # type: ignore[arg-type]
