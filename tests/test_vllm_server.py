"""The vllm server supervisor, against a stand-in server (tests/standin_vllm.py) on loopback: start-up and
health, command lines and GPU groups, start-up failures, restart-once after a crash, and that no process of a
server's group outlives ``stop()``, ``aclose()``, Ctrl-C or SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from refine_agent.tools.local import vllm_process as vs
from refine_agent.tools.local import vllm_server
from refine_agent.tools.local.vllm_server import (
    ServerGroup,
    ServerStartError,
    VLLMServerOptions,
    gpu_groups,
    replica_command,
    replica_env,
)

from refine_agent.errors import ConfigError, PermanentToolError, TransientToolError

STANDIN = [sys.executable, str(Path(__file__).with_name("standin_vllm.py"))]
REPO = Path(__file__).resolve().parents[1]


def opts(tmp_path: Path, *args: str, **kw: object) -> VLLMServerOptions:
    """Options that run the stand-in on CPU: one 'GPU' per replica, logs under tmp_path."""
    kw.setdefault("replicas", 1)
    kw.setdefault("gpus", list(range(int(kw["replicas"]))))  # type: ignore[call-overload]
    return VLLMServerOptions(command=STANDIN, extra_args=list(args), log_dir=tmp_path / "servers",
                             startup_timeout_s=kw.pop("startup_timeout_s", 15), **kw)  # type: ignore[arg-type]


def get(url: str) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as resp:
            return int(resp.status)
    except OSError:
        return 0


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie may wait for a reaper forever in a container)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def child_pid(log: Path) -> int:
    found = re.findall(r"child pid (\d+)", log.read_text())
    assert found, log.read_text()
    return int(found[-1])


def wait_for(cond, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return bool(cond())


# -- command lines and GPUs (no processes) -----------------------------------------------------------------

def test_command_lines_and_gpu_groups_per_replica() -> None:
    o = VLLMServerOptions(tensor_parallel_size=2, replicas=2, gpus=[4, 5, 6, 7], port=9000, max_model_len=8192,
                          gpu_memory_utilization=0.85, served_model_name="qwen", extra_args=["--enforce-eager"])
    assert gpu_groups(o) == [["4", "5"], ["6", "7"]]
    assert replica_command("/models/Qwen2.5-VL-7B-Instruct", o, 9001) == [
        "vllm", "serve", "/models/Qwen2.5-VL-7B-Instruct", "--host", "127.0.0.1", "--port", "9001",
        "--tensor-parallel-size", "2", "--limit-mm-per-prompt", '{"image": 2}', "--max-model-len", "8192",
        "--gpu-memory-utilization", "0.85", "--served-model-name", "qwen", "--enforce-eager"]
    assert replica_env(["6", "7"], {"PATH": "/bin"})["CUDA_VISIBLE_DEVICES"] == "6,7"
    group = ServerGroup("/models/m", o, name="judge")
    assert [s.name for s in group.servers] == ["judge-0", "judge-1"]
    assert group.urls == ["http://127.0.0.1:9000/v1", "http://127.0.0.1:9001/v1"]
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in group.servers] == ["4,5", "6,7"]
    assert all(s.model == "qwen" for s in group.servers)  # /v1/models lists the served name


def test_default_gpus_and_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3,5")
    assert gpu_groups(VLLMServerOptions(replicas=3)) == [["2"], ["3"], ["5"]]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(vllm_server, "_detected_gpus", lambda: None)  # no driver to ask: assume 0..N-1
    assert gpu_groups(VLLMServerOptions(replicas=2, tensor_parallel_size=2)) == [["0", "1"], ["2", "3"]]
    group = ServerGroup("m", VLLMServerOptions(replicas=3))
    ports = [int(u.split(":")[2].split("/")[0]) for u in group.urls]
    assert len(set(ports)) == 3 and group.log_dir.is_dir()


def test_too_few_gpus_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as err:
        gpu_groups(VLLMServerOptions(replicas=2, tensor_parallel_size=2, gpus=[0, 1, 2]))
    assert str(err.value) == ("vllm: 2 replica(s) x tensor_parallel_size 2 need 4 GPUs, but only 3 are "
                              "available (gpus=0,1,2)")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(ConfigError, match="need 1 GPUs, but only 0"):
        ServerGroup("m", VLLMServerOptions())
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(vllm_server, "_detected_gpus", lambda: 1)
    with pytest.raises(ConfigError, match=r"only 1 are available \(detected: 0\)"):
        ServerGroup("m", VLLMServerOptions(replicas=2))
    with pytest.raises(ConfigError, match="twice"):
        gpu_groups(VLLMServerOptions(gpus=[1, 1]))
    with pytest.raises(ValueError):
        VLLMServerOptions(gpu_memory_utilization=1.5)
    with pytest.raises(ValueError):
        VLLMServerOptions(tensor_parallel=2)  # type: ignore[call-arg]


# -- real processes on loopback ----------------------------------------------------------------------------

async def test_start_waits_for_health_and_serves_chat(tmp_path: Path) -> None:
    group = ServerGroup("tiny-vlm", opts(tmp_path, "--slow-start-s", "0.6", "--tensor-parallel-size", "1",
                                         replicas=2, gpus=[3, 7]), name="judge")
    t0 = time.monotonic()
    await group.start()
    try:
        assert time.monotonic() - t0 >= 0.6  # /health said 503 until then
        assert group.available_urls() == group.urls
        assert all(get(u.removesuffix("/v1") + "/health") == 200 for u in group.urls)
        from refine_agent.tools.api.backend import Msg, make_chat

        chat = make_chat("openai", "tiny-vlm", {"base_url": group.urls, "price_in": 0, "price_out": 0})
        replies = [await chat.complete([Msg("user", ["rate it"])]) for _ in range(2)]  # one per replica
        assert [r.text for r in replies] == ['{"score": 5}'] * 2
        await chat.aclose()  # type: ignore[attr-defined]
        logs = {p.name: p.read_text() for p in (tmp_path / "servers").iterdir()}
        assert sorted(logs) == ["judge-0.log", "judge-1.log"]
        assert "CUDA_VISIBLE_DEVICES=3" in logs["judge-0.log"] and "CUDA_VISIBLE_DEVICES=7" in logs["judge-1.log"]
        assert "standin-vllm: serving on" in logs["judge-1.log"]
        assert """--limit-mm-per-prompt '{"image": 2}'""" in logs["judge-0.log"]  # the command, as run
    finally:
        await group.aclose()
    assert not any(s.alive() for s in group.servers) and not vs._LIVE
    await group.aclose()  # idempotent


async def test_crash_at_start_reports_the_log_tail_and_stops_the_others(tmp_path: Path) -> None:
    group = ServerGroup("m", opts(tmp_path, replicas=2))
    group.servers[1].argv.append("--fail-at-start")
    with pytest.raises(ServerStartError) as err:
        await group.start()
    first, *rest = str(err.value).splitlines()
    assert first.startswith("vllm server vllm-1 exited with code 1 during start-up (log: ")
    assert "CUDA out of memory" in err.value.log_tail and "CUDA out of memory" in "\n".join(rest)
    assert len(err.value.log_tail.splitlines()) <= 20
    assert not any(s.alive() for s in group.servers) and not vs._LIVE


async def test_startup_timeout_kills_it(tmp_path: Path) -> None:
    group = ServerGroup("m", opts(tmp_path, "--slow-start-s", "60", "--spawn-child", startup_timeout_s=0.8))
    with pytest.raises(ServerStartError, match=r"did not become healthy within 0.8s") as err:
        await group.start()
    assert "standin-vllm: serving on" in err.value.log_tail
    assert not running(child_pid(group.servers[0].log_path))


async def test_missing_command_is_one_line(tmp_path: Path) -> None:
    o = opts(tmp_path)
    o.command = [str(tmp_path / "no-such-vllm"), "serve"]
    with pytest.raises(ConfigError, match=r"^cannot start vllm-0: .*no-such-vllm: No such file"):
        await ServerGroup("m", o).start()


async def test_crash_mid_run_restarts_once_then_drops_the_replica(tmp_path: Path) -> None:
    group = ServerGroup("m", opts(tmp_path, replicas=2))
    await group.start()
    try:
        first, other = group.servers
        await group.check(first.url)  # alive: nothing to do
        assert first.starts == 1
        os.killpg(first.pid, signal.SIGKILL)  # type: ignore[arg-type]
        assert wait_for(lambda: not first.alive())
        await group.check(first.url + "/")  # the SDK's spelling of the base URL
        assert first.starts == 2 and first.alive() and get(first.url + "/models") == 200
        assert group.available_urls() == group.urls
        assert first.log_path.read_text().count("=== ") == 2  # the crash's log is kept
        os.killpg(first.pid, signal.SIGKILL)  # type: ignore[arg-type]
        assert wait_for(lambda: not first.alive())
        with pytest.raises(TransientToolError, match="vllm-0 .* crashed again and is dropped"):
            await group.check(first.url)
        assert group.available_urls() == [other.url] and get(other.url + "/models") == 200
        with pytest.raises(TransientToolError, match="vllm-0 .* was dropped"):  # for good
            await group.check(first.url)
        os.killpg(other.pid, signal.SIGKILL)  # type: ignore[arg-type]
        assert wait_for(lambda: not other.alive())
        await group.check(other.url)  # its one restart
        assert group.available_urls() == [other.url]
        await group.check("http://127.0.0.1:1/v1")  # not ours: nothing to do
    finally:
        await group.aclose()


async def test_a_replica_that_cannot_restart_is_dropped(tmp_path: Path) -> None:
    group = ServerGroup("m", opts(tmp_path, "--die-after-s", "1.5"))
    await group.start()
    try:
        server = group.servers[0]
        assert wait_for(lambda: not server.alive())  # it exits by itself
        server.argv.append("--fail-at-start")
        with pytest.raises(PermanentToolError, match="could not be restarted and is dropped: vllm server vllm-0 "
                                                     "exited with code 1 during start-up .*; no replica of m is left"):
            await group.check(server.url)
        assert group.available_urls() == []
    finally:
        await group.aclose()


async def test_stop_takes_the_whole_process_group(tmp_path: Path) -> None:
    group = ServerGroup("m", opts(tmp_path, "--spawn-child", "--ignore-sigterm", replicas=2))
    await group.start()
    leaders = [s.pid for s in group.servers]
    children = [child_pid(s.log_path) for s in group.servers]
    assert all(running(p) for p in leaders + children)  # type: ignore[arg-type]
    t0 = time.monotonic()
    vs.stop_servers(group.servers, grace_s=0.5)  # SIGTERM is ignored: SIGKILL after the grace period
    assert 0.4 < time.monotonic() - t0 < 5
    assert not any(running(p) for p in leaders + children)  # type: ignore[arg-type]
    group.servers[0].stop()  # idempotent


DRIVER = """
import asyncio, json, sys
sys.path.insert(0, {repo!r})
from refine_agent.tools.local.vllm_server import ServerGroup, VLLMServerOptions

async def main():
    group = ServerGroup("m", VLLMServerOptions(replicas=2, gpus=[0, 1], command={cmd!r}, log_dir={logs!r},
                                               extra_args=["--spawn-child"], startup_timeout_s=15))
    await group.start()  # no aclose(): the exit hooks must do it
    print(json.dumps([s.pid for s in group.servers]), flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_stops_every_group(tmp_path: Path, signum: int) -> None:
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(DRIVER.format(repo=str(REPO), cmd=STANDIN, logs=str(tmp_path / "logs"))))
    with subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as driver:
        try:
            line = driver.stdout.readline()  # type: ignore[union-attr]
            assert line, driver.stderr.read()  # type: ignore[union-attr]
            leaders = json.loads(line)
            children = [child_pid(tmp_path / "logs" / f"vllm-{i}.log") for i in range(2)]
            assert all(running(p) for p in leaders + children)
            driver.send_signal(signum)
            assert driver.wait(timeout=15) != 0
        finally:
            if driver.poll() is None:
                driver.kill()
    assert not any(running(p) for p in leaders + children)
    assert all(not vs.group_alive(p) for p in leaders)
