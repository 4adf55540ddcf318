"""One managed server process: started in its own process group, waited for, stopped with its whole group.

Live servers are kept in a module-level registry and stopped at exit, on SIGTERM/SIGHUP, and after Ctrl-C
(KeyboardInterrupt unwinds to the ``atexit`` hook), so no GPU is left held by an orphaned server.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import shlex
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from refine_agent.errors import ConfigError

POLL_S = 0.2  # health polling interval
TAIL_LINES = 20


class ServerStartError(ConfigError):
    """A server that exited or never became healthy during start-up. The first line of the message says
    which and where its log is; the log's last lines follow (also in ``log_tail``)."""

    def __init__(self, headline: str, log_path: Path, log_tail: str) -> None:
        super().__init__(f"{headline} (log: {log_path})" + (f"\n{log_tail}" if log_tail else ""))
        self.log_path = log_path
        self.log_tail = log_tail


# -- process groups ---------------------------------------------------------------------------------------

def group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` still runs. Zombies do not count: an orphan's zombie may wait
    for a reaper that never comes (PID 1 in a container)."""
    if not Path("/proc/self/stat").exists():  # no /proc: ask the kernel (zombies count then)
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    for entry in Path("/proc").iterdir():
        try:  # fields after "(comm)": state, ppid, pgrp, ...
            fields = (entry / "stat").read_text().rpartition(")")[2].split() if entry.name.isdigit() else []
        except OSError:
            continue  # it exited meanwhile
        if fields and fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass  # gone already



# -- one process -------------------------------------------------------------------------------------------

_LIVE: set[VLLMServer] = set()
_LIVE_LOCK = threading.RLock()  # re-entered by a signal handler
_HOOKS_INSTALLED = False


def _probe(url: str) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
    try:
        with opener.open(url, timeout=2.0) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except (OSError, ValueError):
        return 0, b""


class VLLMServer:
    """One replica: a ``vllm serve`` process group, its port and its log file."""

    STOP_GRACE_S = 10.0

    def __init__(self, name: str, model: str, argv: list[str], env: dict[str, str], *, host: str, port: int,
                 log_path: Path, startup_timeout_s: float = 900.0) -> None:
        self.name, self.model, self.argv, self.env = name, model, argv, env
        self.host, self.port, self.log_path = host, port, log_path
        self.startup_timeout_s = startup_timeout_s
        self.starts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_offset = 0
        self._owner = os.getpid()
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"VLLMServer({self.name!r}, {self.url}, pid={self.pid})"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def launch(self) -> None:
        """Start the process (not waiting for it to serve); a stopped or crashed server starts again."""
        _install_exit_hooks()
        self.stop(grace_s=0)  # a crashed run may have left workers in its group
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # appended: a restart keeps the crash's log
        self._log_offset = self._log.tell()
        self._log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.name}: "
                        f"CUDA_VISIBLE_DEVICES={self.env.get('CUDA_VISIBLE_DEVICES', '')} "
                        f"{shlex.join(self.argv)}\n".encode())
        self._log.flush()
        try:  # its own session and process group: Ctrl-C goes to us, and we stop the whole group
            self._proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=self._log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            self._close_log()
            raise ConfigError(f"cannot start {self.name}: {self.argv[0]}: {exc.strerror or exc}") from None
        self._owner = os.getpid()
        with _LIVE_LOCK:
            _LIVE.add(self)
        self.starts += 1

    async def wait_ready(self) -> None:
        """Poll ``/health`` and ``/v1/models`` until the server serves the model; raise ServerStartError (and
        stop it) if it exits or does not get there within ``startup_timeout_s``."""
        base = self.url.removesuffix("/v1")
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            code = self._proc.poll() if self._proc is not None else -1
            if code is not None:
                self.stop(grace_s=0)
                raise ServerStartError(f"vllm server {self.name} exited with code {code} during start-up",
                                       self.log_path, self.log_tail())
            if await self._serves(base):
                return
            if time.monotonic() >= deadline:
                await asyncio.to_thread(self.stop)
                raise ServerStartError(f"vllm server {self.name} did not become healthy within "
                                       f"{self.startup_timeout_s:g}s", self.log_path, self.log_tail())
            await asyncio.sleep(POLL_S)

    async def _serves(self, base: str) -> bool:
        status, _ = await asyncio.to_thread(_probe, base + "/health")
        if status != 200:
            return False
        status, body = await asyncio.to_thread(_probe, base + "/v1/models")
        try:  # another server on this port would list another model: not ours
            ids = [m.get("id") for m in json.loads(body).get("data", [])] if status == 200 else []
        except (ValueError, AttributeError):
            return False
        return self.model in ids and self.alive()

    def log_tail(self, n: int = TAIL_LINES) -> str:
        """The last ``n`` lines the current run wrote to its log."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(self._log_offset, f.seek(0, os.SEEK_END) - 64 * 1024))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-n:])

    def stop(self, grace_s: float | None = None) -> None:
        """SIGTERM the process group, SIGKILL what is left after ``grace_s``. Idempotent."""
        stop_servers([self], self.STOP_GRACE_S if grace_s is None else grace_s)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _wait_gone(procs: list[subprocess.Popen[bytes]], seconds: float) -> None:
    """Until every leader is reaped and its group empty, or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while any(p.poll() is None or group_alive(p.pid) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.02)


def stop_servers(servers: Iterable[VLLMServer], grace_s: float = VLLMServer.STOP_GRACE_S) -> None:
    """Stop several servers at once: SIGTERM every group, one shared grace period, then SIGKILL."""
    held = sorted(set(servers), key=id)  # one lock order for every caller: no deadlock between threads
    for s in held:
        s._lock.acquire()
    try:
        running = [(s, s._proc) for s in held if s._proc is not None]
        for _, proc in running:
            signal_group(proc.pid, signal.SIGTERM)
        _wait_gone([p for _, p in running], grace_s)
        for _, proc in running:
            if group_alive(proc.pid):
                signal_group(proc.pid, signal.SIGKILL)
        _wait_gone([p for _, p in running], 5.0)  # SIGKILL takes effect soon, not at once
        for s, proc in running:
            if s._proc is proc:
                s._proc = None
            s._close_log()
            with _LIVE_LOCK:
                _LIVE.discard(s)
    finally:
        for s in held:
            s._lock.release()


def stop_all() -> None:
    """Stop every live server this process started (the exit hooks call it)."""
    with _LIVE_LOCK:  # a forked child must not stop its parent's servers
        servers = [s for s in _LIVE if s._owner == os.getpid()]
    stop_servers(servers)


def _on_signal(signum: int, frame: Any) -> None:
    stop_all()
    previous = _PREVIOUS_HANDLERS.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
        return
    signal.signal(signum, signal.SIG_DFL)  # then die of the signal, as without this hook
    os.kill(os.getpid(), signum)


_PREVIOUS_HANDLERS: dict[int, Any] = {}


def _install_exit_hooks() -> None:
    """At exit (also after Ctrl-C's KeyboardInterrupt), SIGTERM or SIGHUP: stop every live server first."""
    global _HOOKS_INSTALLED
    if _HOOKS_INSTALLED:
        return
    _HOOKS_INSTALLED = True
    atexit.register(stop_all)
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread; atexit still covers a normal exit
    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous = signal.getsignal(signum)
        if previous in (signal.SIG_IGN, None):
            continue  # ignored (e.g. under nohup) or set outside Python: leave it
        _PREVIOUS_HANDLERS[signum] = previous
        signal.signal(signum, _on_signal)
