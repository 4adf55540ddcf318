"""A stand-in for ``vllm serve`` (standard library only), for testing the server supervisor on CPU.

    python -m tests.standin_vllm MODEL --host H --port P [--served-model-name NAME] [--die-after-s S]
        [--fail-at-start] [--spawn-child] [--slow-start-s S] [--ignore-sigterm] [--reply TEXT] [--record FILE]
        [other vllm flags, ignored]

Serves ``/health`` (503 until ``--slow-start-s`` has passed), ``/v1/models`` and ``/v1/chat/completions``
(a fixed OpenAI-shaped reply whose content is ``{"score": 5}``). ``--spawn-child`` starts a sleeping
grandchild in the same process group, so tests can prove that stopping a server stops its whole group.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REPLY = '{"score": 5}'


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="standin_vllm")
    p.add_argument("model", nargs="?", default=None)
    p.add_argument("--model", dest="model_flag", default=None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--served-model-name", default=None)
    p.add_argument("--die-after-s", type=float, default=None, help="exit with code 3 this long after start")
    p.add_argument("--fail-at-start", action="store_true", help="print an error and exit 1 before serving")
    p.add_argument("--spawn-child", action="store_true", help="start a sleeping grandchild process")
    p.add_argument("--slow-start-s", type=float, default=0.0, help="/health answers 503 this long")
    p.add_argument("--ignore-sigterm", action="store_true", help="only SIGKILL stops it")
    p.add_argument("--reply", default=REPLY, help="the content of every chat reply")
    p.add_argument("--record", default=None, help="append each chat request's JSON body to this file")
    for flag in ("--tensor-parallel-size", "--limit-mm-per-prompt", "--max-model-len", "--gpu-memory-utilization"):
        p.add_argument(flag, default=None)  # vllm's own flags: accepted, ignored
    args, _ignored = p.parse_known_args(argv)
    return args


def make_handler(model: str, ready_at: float, reply: str = REPLY,
                 record: str | None = None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # keep the log short
            pass

        def _json(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._json(200 if time.monotonic() >= ready_at else 503, {})
            elif self.path == "/v1/models":
                self._json(200, {"object": "list", "data": [{"id": model, "object": "model", "owned_by": "vllm"}]})
            else:
                self._json(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if self.path != "/v1/chat/completions":
                self._json(404, {"error": {"message": f"no route {self.path}"}})
                return
            if record:
                with open(record, "a", encoding="utf-8") as f:
                    f.write(json.dumps(body) + "\n")
            self._json(200, {
                "id": "chatcmpl-standin", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", model),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": reply}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            })

    return Handler


def main(argv: list[str] | None = None) -> None:
    args = parse(sys.argv[1:] if argv is None else argv)
    model = args.served_model_name or args.model_flag or args.model or "standin"
    print(f"standin-vllm: pid {os.getpid()} pgid {os.getpgid(0)} model {model} "
          f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')}", flush=True)
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.spawn_child:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        print(f"standin-vllm: child pid {child.pid}", flush=True)
    if args.fail_at_start:
        print("RuntimeError: CUDA out of memory (stand-in failure at start-up)", file=sys.stderr, flush=True)
        sys.exit(1)
    if args.die_after_s is not None:
        threading.Timer(args.die_after_s, lambda: os._exit(3)).start()
    server = ThreadingHTTPServer((args.host, args.port), make_handler(model, time.monotonic() + args.slow_start_s,
                                                                       args.reply, args.record))
    print(f"standin-vllm: serving on http://{args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
