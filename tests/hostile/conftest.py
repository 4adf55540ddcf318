"""What every hostile case checks: the exit code, one readable line and no traceback, and that nothing the
command does not own changed (so no result was lost)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from refine_agent.cli import app

_runner = CliRunner()


def cli(*args: str, env: dict[str, str] | None = None, input: str | None = None):  # type: ignore[no-untyped-def]
    """Run the CLI in-process (typer's runner), as a user would from a shell."""
    return _runner.invoke(app, [str(a) for a in args], env=env, input=input)


def cli_subprocess(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a real process: the exit code and the output are exactly what a shell sees."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "refine_agent", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


def error_line(output: str, exit_code: int, expected: int) -> str:
    """The one line a failed command prints: non-zero exit, ``error: ...``, no traceback."""
    assert exit_code == expected, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, output
    return errors[0]


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones too) with the sha256 of its bytes, and every folder."""
    if not root.exists():
        return {}
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_dir():
            out[str(p.relative_to(root))] = "folder"
    return out


def changed(before: dict[str, str], after: dict[str, str], *, owned: tuple[str, ...] = ()) -> list[str]:
    """Files added, removed or modified, leaving out the paths (prefixes) the command owns."""
    keys = set(before) | set(after)
    diff = sorted(k for k in keys if before.get(k) != after.get(k))
    return [k for k in diff if not any(k == o or k.startswith(o.rstrip("/") + "/") for o in owned)]
