"""What a command tells the tools it runs, without threading it through every call: where managed servers
write their logs (``RUN_DIR/servers/`` for ``bench``, ``OUT/servers/`` for ``edit``). Context variables, so
concurrent runs in one process (tests) each see their own."""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path

server_log_dir: ContextVar[Path | None] = ContextVar("server_log_dir", default=None)
"""The folder where tools that start servers (``vllm:``) write one log per server."""
