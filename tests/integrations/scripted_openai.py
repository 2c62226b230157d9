"""A tiny OpenAI-compatible HTTP endpoint on loopback that plays a scripted model.

It speaks just enough of ``POST /v1/chat/completions`` and ``POST /v1/responses`` for the real
``openai`` client: each request is recorded, and the next step of the script decides the reply
(tool calls or a final text). A step may be a callable that reads the request body, so the
"model" can quote the tool results it was sent back.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """What the scripted model says: tool calls (name, raw JSON arguments string) or text."""

    tool_calls: list[tuple[str, str]] = field(default_factory=list)
    text: str | None = None


def calls(*pairs: tuple[str, Any]) -> Reply:
    """Tool calls; dict arguments are JSON-encoded, strings are sent verbatim (to test bad JSON)."""
    return Reply(tool_calls=[(name, args if isinstance(args, str) else json.dumps(args)) for name, args in pairs])


def text(value: str) -> Reply:
    return Reply(text=value)


Step = Reply | Callable[[str, dict[str, Any]], Reply]


def tool_outputs(api: str, body: dict[str, Any]) -> list[Any]:
    """The tool results the client sent back in this request, in order."""
    if api == "chat":
        return [m.get("content") for m in body.get("messages", []) if m.get("role") == "tool"]
    return [
        i.get("output")
        for i in body.get("input", [])
        if isinstance(i, dict) and i.get("type") == "function_call_output"
    ]


class ScriptedOpenAI:
    """Run with ``with ScriptedOpenAI(steps) as server: OpenAI(base_url=server.base_url, api_key="test")``."""

    def __init__(self, steps: list[Step]) -> None:
        self.steps = list(steps)
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path.endswith("/chat/completions"):
                    api = "chat"
                elif self.path.endswith("/responses"):
                    api = "responses"
                else:
                    self.send_error(404)
                    return
                try:
                    payload = outer._answer(api, body)
                    status = 200
                except IndexError:
                    payload = {"error": {"message": "script exhausted", "type": "invalid_request_error"}}
                    status = 400
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> ScriptedOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, api: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.requests.append((api, body))
            step = self.steps.pop(0)
        reply = step(api, body) if callable(step) else step
        return _chat(reply, body) if api == "chat" else _responses(reply, body)


def _chat(reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": f"call_{uuid.uuid4().hex[:8]}", "type": "function", "function": {"name": n, "arguments": a}}
            for n, a in reply.tool_calls
        ]
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:8]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "scripted"),
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if reply.tool_calls else "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _responses(reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
    output: list[dict[str, Any]] = []
    for name, arguments in reply.tool_calls:
        output.append(
            {
                "type": "function_call",
                "id": f"fc_{uuid.uuid4().hex[:8]}",
                "call_id": f"call_{uuid.uuid4().hex[:8]}",
                "name": name,
                "arguments": arguments,
                "status": "completed",
            }
        )
    if reply.text is not None:
        output.append(
            {
                "type": "message",
                "id": f"msg_{uuid.uuid4().hex[:8]}",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": reply.text, "annotations": []}],
            }
        )
    return {
        "id": f"resp_{uuid.uuid4().hex[:8]}",
        "object": "response",
        "created_at": int(time.time()),
        "model": body.get("model", "scripted"),
        "status": "completed",
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": body.get("tools", []),
        "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2},
    }
