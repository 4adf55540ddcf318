"""Managed ``vllm serve`` processes: start them, wait until they serve, restart a crashed one once, stop them.

``ServerGroup`` runs ``replicas`` copies of one model, each on its own GPU group (``tensor_parallel_size``
GPUs) and loopback port; the OpenAI-compatible backend talks to its ``urls``. Each replica runs in its own
process group (vLLM spawns engine and worker processes), so stopping one signals the whole group: SIGTERM,
a grace period, then SIGKILL. Live servers are kept in a module-level registry and stopped at exit, on
SIGTERM/SIGHUP, and after Ctrl-C (KeyboardInterrupt unwinds to the ``atexit`` hook): no GPU is left held
by an orphaned server. Nothing here imports vLLM; it only runs its command line.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import tempfile
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from refine_agent.errors import ConfigError, PermanentToolError, TransientToolError

from .vllm_process import ServerStartError, VLLMServer, group_alive, stop_all, stop_servers

__all__ = ["ServerGroup", "ServerStartError", "VLLMServer", "VLLMServerOptions", "gpu_groups", "group_alive",
           "replica_command", "replica_env", "stop_all", "stop_servers"]



class VLLMServerOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tensor_parallel_size: int = Field(default=1, ge=1, description="GPUs per replica")
    replicas: int = Field(default=1, ge=1, description="servers of the same model, load-balanced")
    gpus: list[int] | None = Field(default=None, description="GPU ids to use (default: CUDA_VISIBLE_DEVICES, "
                                   "else 0..replicas*tp-1)")
    max_model_len: int | None = Field(default=None, ge=1)
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    limit_mm_per_prompt: int = Field(default=2, ge=0, description="images per request")
    port: int | None = Field(default=None, ge=1, le=65535, description="replica i listens on port+i "
                             "(default: a free loopback port each)")
    host: str = "127.0.0.1"
    extra_args: list[str] = Field(default_factory=list, description="passed to vllm serve as they are")
    startup_timeout_s: float = Field(default=900.0, gt=0, description="loading a model can take minutes")
    served_model_name: str | None = None
    command: list[str] | None = Field(default=None, description="default: vllm serve")
    log_dir: Path | None = Field(default=None, description="where NAME-i.log go (default: a temp folder)")


# -- command lines -----------------------------------------------------------------------------------------

def _detected_gpus() -> int | None:
    """GPUs the NVIDIA driver reports, without importing torch (None where there is no driver to ask)."""
    root = Path("/proc/driver/nvidia/gpus")
    return len(list(root.iterdir())) if root.is_dir() else None


def gpu_groups(opts: VLLMServerOptions) -> list[list[str]]:
    """Each replica's GPUs (as CUDA_VISIBLE_DEVICES entries), or a one-line ConfigError if too few."""
    need = opts.replicas * opts.tensor_parallel_size
    if opts.gpus is not None:
        have, where = [str(g) for g in opts.gpus], "gpus="
    elif "CUDA_VISIBLE_DEVICES" in os.environ:
        have = [g.strip() for g in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
        where = "CUDA_VISIBLE_DEVICES="
    else:
        found = _detected_gpus()
        have, where = [str(g) for g in range(need if found is None else found)], "detected: "
    if len(set(have)) != len(have):
        raise ConfigError(f"vllm: the GPU list {','.join(have)} names a GPU twice")
    if len(have) < need:
        raise ConfigError(f"vllm: {opts.replicas} replica(s) x tensor_parallel_size {opts.tensor_parallel_size} "
                          f"need {need} GPUs, but only {len(have)} are available ({where}{','.join(have)})")
    tp = opts.tensor_parallel_size
    return [have[i * tp:(i + 1) * tp] for i in range(opts.replicas)]


def free_ports(host: str, n: int) -> list[int]:
    """``n`` distinct ports free on ``host`` now (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def replica_command(model: str, opts: VLLMServerOptions, port: int) -> list[str]:
    """The argv of one replica: ``vllm serve MODEL --host H --port P ...`` then ``extra_args``."""
    cmd = [*(opts.command or ["vllm", "serve"]), model, "--host", opts.host, "--port", str(port),
           "--tensor-parallel-size", str(opts.tensor_parallel_size),
           "--limit-mm-per-prompt", json.dumps({"image": opts.limit_mm_per_prompt})]  # JSON, as current vLLM takes it
    if opts.max_model_len is not None:
        cmd += ["--max-model-len", str(opts.max_model_len)]
    if opts.gpu_memory_utilization is not None:
        cmd += ["--gpu-memory-utilization", str(opts.gpu_memory_utilization)]
    if opts.served_model_name:
        cmd += ["--served-model-name", opts.served_model_name]
    return cmd + list(opts.extra_args)


def replica_env(gpus: list[str], base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    env["PYTHONUNBUFFERED"] = "1"  # the log shows the last lines before a crash
    return env


# -- replicas ----------------------------------------------------------------------------------------------

class ServerGroup:
    """All replicas of one model. ``start()``, then give the backend ``urls``; on a connection error to a
    replica call ``check(url)``; ``aclose()`` at the end. A replica that crashes is restarted once
    (``max_restarts``); after that it is dropped and the others serve on."""

    def __init__(self, model: str, options: VLLMServerOptions | None = None, *, name: str = "vllm",
                 max_restarts: int = 1) -> None:
        self.model = model
        self.options = opts = options or VLLMServerOptions()
        self.max_restarts = max_restarts
        groups = gpu_groups(opts)
        ports = ([opts.port + i for i in range(opts.replicas)] if opts.port is not None
                 else free_ports(opts.host, opts.replicas))
        self.log_dir = opts.log_dir or Path(tempfile.mkdtemp(prefix="refine-agent-vllm-"))
        served = opts.served_model_name or model
        self.servers = [VLLMServer(f"{name}-{i}", served, replica_command(model, opts, ports[i]),
                                   replica_env(groups[i]), host=opts.host, port=ports[i],
                                   log_path=self.log_dir / f"{name}-{i}.log",
                                   startup_timeout_s=opts.startup_timeout_s)
                        for i in range(opts.replicas)]
        self.dead: set[str] = set()  # names of replicas dropped for good
        self._restarting: dict[str, asyncio.Future[None]] = {}

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    def available_urls(self) -> list[str]:
        """The replicas serving now (not dropped, not restarting)."""
        return [s.url for s in self.servers if s.name not in self.dead and s.name not in self._restarting]

    async def start(self) -> None:
        """Start every replica and wait until all serve; if any fails (or we are cancelled), stop them all."""
        waits: list[asyncio.Future[None]] = []
        try:
            for s in self.servers:
                s.launch()
            waits = [asyncio.ensure_future(s.wait_ready()) for s in self.servers]
            await asyncio.gather(*waits)
        except BaseException:
            for w in waits:  # the others stop waiting too: no task is left polling a stopped server
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
            await asyncio.to_thread(stop_servers, self.servers)
            raise

    async def aclose(self) -> None:
        for pending in list(self._restarting.values()):
            pending.cancel()
        await asyncio.to_thread(stop_servers, self.servers)

    async def __aenter__(self) -> ServerGroup:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _find(self, url: str) -> VLLMServer | None:
        where = urlsplit(url)
        for s in self.servers:
            mine = urlsplit(s.url)
            if (where.hostname, where.port) == (mine.hostname, mine.port):
                return s
        return None

    async def check(self, url: str) -> None:
        """A request to ``url`` failed to connect. If that replica's process died, restart it (once) and
        return when it serves again; a replica dropped for good raises TransientToolError (the runtime
        retries elsewhere), or PermanentToolError when no replica is left."""
        server = self._find(url)
        if server is None:
            return
        pending = self._restarting.get(server.name)
        if pending is None and server.name not in self.dead:
            if server.alive():
                return  # a hiccup, not a crash
            if server.starts > self.max_restarts:
                self._drop(server, "crashed again and is dropped")
            pending = self._restarting[server.name] = asyncio.ensure_future(self._restart(server))
        if pending is None:
            self._drop(server, "was dropped")
        await asyncio.shield(pending)  # callers that meet a restart under way wait for it too

    async def _restart(self, server: VLLMServer) -> None:
        try:
            await asyncio.to_thread(server.launch)
            await server.wait_ready()
        except Exception as exc:
            self._drop(server, f"could not be restarted and is dropped: {str(exc).splitlines()[0]}")
        finally:
            self._restarting.pop(server.name, None)

    def _drop(self, server: VLLMServer, why: str) -> NoReturn:
        self.dead.add(server.name)
        server.stop(grace_s=0)
        left = [s.name for s in self.servers if s.name not in self.dead]
        where = f"vllm replica {server.name} at {server.url} {why}" + (
            "" if "(log: " in why else f" (log: {server.log_path})")
        if not left:
            raise PermanentToolError(f"{where}; no replica of {self.model} is left")
        raise TransientToolError(f"{where}; {len(left)} other replica(s) serve on")
