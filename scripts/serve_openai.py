#!/usr/bin/env python
"""Serve an OpenAI-compatible chat endpoint on loopback, for the teacher / judge.

python scripts/serve_openai.py MODEL_DIR [--host 127.0.0.1] [--port 8000]
    registers the project's image-only Qwen-VL processor (tatar_core.modeling.register_processor), works
    around stop strings failing for VLM processors, then runs `transformers serve MODEL_DIR --device cpu
    --host … --port …` in this process (GET /health, POST /v1/chat/completions).

python scripts/serve_openai.py --stub [--latency 0.2] [--port 8000]
    a scripted stand-in server (stdlib HTTP, real sockets) that answers every chat request with a valid
    teacher reply or judge verdict after `latency` seconds. `StubOpenAIServer` (importable) also takes a
    `behaviour(request, n)` hook to script errors (429, 500, timeouts, malformed JSON, empty content);
    tests and scripts/bench_teacher_concurrency.py use it.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Optional, Union

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Reply:
    """One scripted HTTP answer: `body` dict → JSON; str/bytes sent verbatim; `delay_s` before answering."""

    status: int = 200
    body: Union[dict, str, bytes, None] = None
    delay_s: float = 0.0
    headers: dict = field(default_factory=dict)


def request_text(req: dict) -> str:
    """All text parts of all messages of a chat request, joined."""
    parts = []
    for m in req.get("messages", []):
        c = m.get("content")
        if isinstance(c, str):
            parts.append(c)
        elif isinstance(c, list):
            parts += [p.get("text", "") for p in c if isinstance(p, dict) and p.get("type") == "text"]
    return "\n".join(parts)


def completion(content: Optional[str], model: str = "stub") -> dict:
    """An OpenAI chat.completion object with one choice holding `content`."""
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


_SCORE_RE = re.compile(r"(?:Known quality score|Final aesthetic score|Known score):\s*([0-9.]+)")
FAST_REPLY = (
    "<think>The image looks sharp with crisp edges and fine texture throughout the frame. Noise and "
    "compression artefacts are hardly visible, and the exposure keeps detail in both the shadows and "
    "the highlights.</think><answer>{score}</answer>"
)
SLOW_REPLY = (
    "<think>The composition places the main subject with a calm balance, and the framing leads the eye "
    "through the layout. Colour and contrast stay harmonious, with soft lighting and gentle shadow that "
    "give depth and texture. Technical execution is clean, with clear edges and refined rendering. The "
    "theme reads simply and the narrative is easy to follow, so the mood feels quiet and the emotional "
    "impact on the viewer is modest. Originality is limited, since the concept is familiar rather than "
    "novel. Overall the image is coherent and pleasant, and its aesthetic appeal matches this rating "
    "well.</think><answer>{score}</answer>"
)


def default_reply(req: dict) -> Reply:
    """A valid answer: a keep verdict for judge requests, a teacher reply ending in the prompt's score otherwise."""
    text = request_text(req)
    if "auditor" in text:
        crit = re.findall(r'\\?"(\w+)\\?": 0-5', text)
        verdict = {
            "decision": "keep",
            "overall_confidence": 90,
            "scores": {c: 4 for c in crit},
            "major_issues": [],
            "minor_notes": [],
        }
        return Reply(body=completion(json.dumps(verdict), req.get("model", "stub")))
    m = _SCORE_RE.search(text)
    score = m.group(1) if m else "50.00"
    tmpl = SLOW_REPLY if "aesthetic" in text.lower() else FAST_REPLY
    return Reply(body=completion(tmpl.format(score=score), req.get("model", "stub")))


class StubOpenAIServer:
    """A scripted OpenAI-compatible server on 127.0.0.1 (ThreadingHTTPServer in a daemon thread).

    `behaviour(request_json, n) -> Reply | None` (n = 1-based request number; None = default reply) scripts
    each answer; `latency_s` is added to every answer. `requests` records every request body and `headers` its
    headers (lower-case names),
    `max_in_flight` the highest number of requests served at once.
    """

    def __init__(
        self,
        behaviour: Optional[Callable[[dict, int], Optional[Reply]]] = None,
        latency_s: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.behaviour = behaviour
        self.latency_s = latency_s
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, port), self._handler())
        self._httpd.daemon_threads = True
        self._thread: Optional[threading.Thread] = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                # one small response must not wait for the client's delayed ACK (Nagle): ~40 ms per request
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: bytes, ctype: str = "application/json", headers: dict = {}):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k, str(v))
                self._headers_buffer.append(b"\r\n" + body)  # headers and body in one write
                self.flush_headers()

            def do_GET(self):
                if self.path.rstrip("/") == "/health":
                    self._send(200, b'{"status":"ok"}')
                elif self.path.rstrip("/") == "/v1/models":
                    self._send(
                        200, json.dumps({"object": "list", "data": [{"id": "stub", "object": "model"}]}).encode()
                    )
                else:
                    self._send(404, b'{"error":"not found"}')

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                try:
                    req = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    req = {}
                with server._lock:
                    server.requests.append(req)
                    server.headers.append({k.lower(): v for k, v in self.headers.items()})
                    n = len(server.requests)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    try:
                        reply = (server.behaviour(req, n) if server.behaviour else None) or default_reply(req)
                    except Exception as e:  # a broken script answers 500 instead of dropping the connection
                        reply = Reply(500, {"error": {"message": f"stub behaviour failed: {type(e).__name__}: {e}"}})
                    time.sleep(server.latency_s + reply.delay_s)
                    body = reply.body if reply.body is not None else completion(None)
                    if isinstance(body, dict):
                        body = json.dumps(body).encode()
                    elif isinstance(body, str):
                        body = body.encode()
                    self._send(reply.status, body, headers=reply.headers)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass
                finally:
                    with server._lock:
                        server.in_flight -= 1

        return Handler

    def start(self) -> "StubOpenAIServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="stub-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "StubOpenAIServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _unwrap_processor_for_stop_strings() -> None:
    """`transformers serve` passes a VLM's *processor* as the tokenizer of `StopStringCriteria`, which then fails
    with "'…Processor' object has no attribute 'get_vocab'" (HTTP 500 for every request with `stop`). Hand it the
    processor's tokenizer instead."""
    from transformers.generation import stopping_criteria as sc

    if getattr(sc.StopStringCriteria.__init__, "_tatar_unwraps", False):
        return
    original = sc.StopStringCriteria.__init__

    def __init__(self, tokenizer, stop_strings):
        if not hasattr(tokenizer, "get_vocab") and hasattr(tokenizer, "tokenizer"):
            tokenizer = tokenizer.tokenizer
        original(self, tokenizer, stop_strings)

    __init__._tatar_unwraps = True
    sc.StopStringCriteria.__init__ = __init__


def serve_model(model_dir: str, host: str, port: int, extra: list[str]) -> int:
    """Register the processor, then run the transformers CLI in this process."""
    sys.path.insert(0, str(REPO))
    from tatar_core.demo.view import register_view_processor
    from tatar_core.processor import register_processor

    register_processor()
    register_view_processor()
    _unwrap_processor_for_stop_strings()
    from transformers.cli.transformers import main as transformers_main

    sys.argv = [
        "transformers",
        "serve",
        str(model_dir),
        "--device",
        "cpu",
        "--host",
        host,
        "--port",
        str(port),
        *extra,
    ]
    return transformers_main() or 0


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", nargs="?", help="local model folder for `transformers serve`")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--stub", action="store_true", help="run the scripted stand-in server instead")
    ap.add_argument("--latency", type=float, default=0.0, help="stub: seconds per answer")
    args, extra = ap.parse_known_args(argv)
    if args.stub:
        srv = StubOpenAIServer(latency_s=args.latency, host=args.host, port=args.port).start()
        print(f"stub OpenAI server on {srv.base_url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            srv.stop()
        return 0
    if not args.model_dir:
        ap.error("give MODEL_DIR, or --stub")
    return serve_model(args.model_dir, args.host, args.port, extra)


if __name__ == "__main__":
    sys.exit(main())
