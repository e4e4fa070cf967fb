"""A fault-injecting fake OpenAI-compatible chat server (stdlib only), for tests and demos.

It answers ``POST /v1/chat/completions`` with a caption made from the prompt's keywords
(the first prompt line's text after its colon, comma-separated), in Chinese when the
request is written in Chinese, else in English, e.g. "A photo showing red and circle.".
``GET /v1/models`` lists its model. A request naming another model gets a 404, a wrong
API key (when one is set) a 401, like real servers.

In a test (``tests/`` is on ``sys.path``; conftest also offers a ``fake_llm`` fixture)::

    from fakes.openai_server import FakeOpenAI

    with FakeOpenAI() as llm:                    # 127.0.0.1, ephemeral port
        cfg = LLMConfig(base_url=llm.base_url)   # "http://127.0.0.1:PORT/v1"
        llm.set_behavior("status", status=500)   # every request from now on
        llm.enqueue("slow", delay=2.0)           # the next request only, then the default
        llm.script("empty", ("status", {"status": 429, "retry_after": 2}))  # several, in order
        ...
        llm.requests[-1]["chat_template_kwargs"]  # JSON bodies received, oldest first
        with llm.down():                         # nothing listening (connection refused)
            ...                                  # back on the same port afterwards
        llm.go_down("status", after=40)          # 500s once 40 more requests were answered
        llm.come_back()                          # answers again (listens again for "refused")
        llm.requests_while_down                  # chat requests that arrived during outages

Behaviours (name, then parameters):

- ``normal``: the caption.
- ``think_tags``: content ``"<think>reasoning</think>\\n\\n" + caption``.
- ``reasoning_field``: ``reasoning_content`` field with reasoning, content the caption.
- ``reasoning_only``: empty content; the caption only in ``reasoning_content``.
- ``lone_close_think``: content ``"reasoning</think>\\n\\n" + caption`` (no opening tag).
- ``status``: ``status=500``, optional ``retry_after`` (seconds, sent as Retry-After) and
  ``message``; an OpenAI-style error body.
- ``slow``: ``delay=seconds`` before answering normally (a stop() cuts the wait short).
- ``echo``: content is the user message.
- ``empty``: content ``""``.
- ``wrong_language``: Chinese for an English request, English for a Chinese one.
- ``content``: ``text=...``, optional ``reasoning=...``: exactly that.
- ``truncated``: 200 OK whose JSON body is cut in half, then the connection closes; a
  stream: one event, then one whose JSON is cut in half.
- ``no_choices``: 200 OK with ``"choices": []``.
- ``stall``: ``delay=`` seconds (5): starts the answer (a first stream chunk, or the first
  bytes of the JSON), then goes silent — a server stuck mid-generation; the client's
  timeout must end it.
- ``hang_up``: ``delay=`` seconds (0.5): starts the answer like ``stall`` (the stream's
  first chunk, ``"A ph"``; or the first bytes of a JSON body sent without a length), waits,
  then closes the connection cleanly before the client's timeout: no ``finish_reason``, no
  ``[DONE]``, half a JSON document.
- ``html``: a 200 HTML page for every request, chat and models (a web UI where
  ``llm.base_url`` should point at the API); only as the default (``set_behavior``).
- ``length``: the caption cut after ``chars=`` characters (12) with ``finish_reason:
  "length"``, as a server does when ``max_tokens`` runs out.

Outages (``go_down``/``come_back``) override every behaviour while they last:

- ``refused``: nothing listens (connection refused); a request that slips in while the
  socket closes is dropped without an answer.
- ``status``: every request (chat and models) gets ``status`` (default 500).

``FakeOpenAI(numbered=True)``: each caption names its request ("A photo showing red and
circle (request 7)."), so a photo captioned twice carries two different captions.

Standalone, for demos: ``python tests/fakes/openai_server.py --port 8000`` serves until
Ctrl-C (``--behavior``, ``--model``, ``--host``, ``--verbose``; see ``--help``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_MODEL = "Qwen3-1.7B"
OUTAGE_MODES = ("refused", "status")
BEHAVIORS = frozenset(
    {
        "normal",
        "think_tags",
        "reasoning_field",
        "reasoning_only",
        "lone_close_think",
        "status",
        "slow",
        "echo",
        "empty",
        "wrong_language",
        "content",
        "truncated",
        "no_choices",
        "stall",
        "hang_up",
        "length",
        "html",
    }
)
REASONING = "Okay, the user wants a caption. The keywords suggest the main subject; keep it short."
ZH_WORDS = {
    "red": "红色",
    "blue": "蓝色",
    "green": "绿色",
    "yellow": "黄色",
    "black": "黑色",
    "white": "白色",
    "circle": "圆形",
    "square": "方形",
    "triangle": "三角形",
    "dog": "狗",
    "cat": "猫",
    "beach": "海滩",
    "mountain": "山",
    "tree": "树",
}
_CJK = re.compile(r"[\u4e00-\u9fff]")

Behavior = tuple[str, dict[str, Any]]
Outage = tuple[str, int]  # (mode, HTTP status)


STREAM_PIECE = 4  # characters per streamed delta


def _behavior(item: str | Behavior) -> Behavior:
    name, params = (item, {}) if isinstance(item, str) else item
    if name not in BEHAVIORS:
        raise ValueError(f"unknown behaviour {name!r}; choose from {sorted(BEHAVIORS)}")
    return name, dict(params)


def prompt_keywords(user: str) -> list[str]:
    """Keywords in a prompt: the first line with a colon, the text after that colon."""
    for line in user.replace("/no_think", "").splitlines():
        parts = re.split(r"[:：]", line)
        if len(parts) > 1:
            return [w.strip() for w in re.split(r"[,，、]", parts[-1]) if w.strip()]
    return []


def english_caption(words: list[str]) -> str:
    words = words or ["something"]
    listed = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
    return f"A photo showing {listed}."


def chinese_caption(words: list[str]) -> str:
    words = [ZH_WORDS.get(w.lower(), w) for w in words] or ["一些东西"]
    listed = words[0] if len(words) == 1 else "、".join(words[:-1]) + "和" + words[-1]
    return f"这是一张照片，画面中可以看到{listed}。"


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a slow handler must not block stop()
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fake: FakeOpenAI) -> None:
        super().__init__(address, _Handler)
        self.fake = fake

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that gave up
            super().handle_error(request, client_address)


class FakeOpenAI:
    """The fake server; a context manager (start on enter, stop on exit)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        model: str | None = DEFAULT_MODEL,
        api_key: str | None = None,
        verbose: bool = False,
        numbered: bool = False,
    ) -> None:
        """``model=None`` accepts any model name; ``api_key`` set: require that Bearer key;
        ``numbered``: every caption names the request it answers ("... (request 7)"), so
        that a photo captioned twice shows two different captions."""
        self.host, self.port = host, port
        self.model = model
        self.api_key = api_key
        self.verbose = verbose
        self.numbered = numbered
        self._lock = threading.Lock()
        self._default: Behavior = ("normal", {})
        self._script: list[Behavior] = []
        self._requests: list[dict[str, Any]] = []
        self.last_headers: dict[str, str] = {}  # of the last chat request, names lowercased
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._outage: Outage | None = None  # the outage in force
        self._planned: tuple[int, Outage] | None = None  # (requests still answered, outage)
        self._stopper: threading.Thread | None = None
        self._down_requests = 0

    # -- life cycle ------------------------------------------------------------------------

    def __enter__(self) -> FakeOpenAI:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        stopper = self._stopper
        if stopper is not None:
            stopper.join(timeout=10)
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        """Listen (again): on the port given, else an ephemeral one kept for restarts."""
        if self._server is not None:
            return
        self._wake = threading.Event()
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-openai-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening and close the socket (clients get 'connection refused')."""
        server, self._server = self._server, None
        if server is None:
            return
        self._wake.set()  # cut slow answers short: their connections are dropped
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @contextmanager
    def down(self) -> Iterator[None]:
        """Nothing listens inside the block; the server is back on the same port after it."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    # -- outages -----------------------------------------------------------------------------

    def go_down(self, mode: str = "refused", *, after: int = 0, status: int = 500) -> None:
        """An outage until ``come_back()``: ``refused`` (nothing listens) or ``status``.

        ``after=N``: it starts once N more chat requests have been answered (as their
        behaviour says; an outage starting now is ``after=0``).
        """
        if mode not in OUTAGE_MODES:
            raise ValueError(f"unknown outage {mode!r}; choose from {OUTAGE_MODES}")
        with self._lock:
            self._planned = (after, (mode, status))
        if after <= 0:
            self._answered()

    def come_back(self) -> None:
        """End the outage (or cancel a planned one): normal answers, on the same port."""
        with self._lock:
            outage, self._outage, self._planned = self._outage, None, None
            stopper, self._stopper = self._stopper, None
        if stopper is not None:
            stopper.join(timeout=10)
        if outage is not None and outage[0] == "refused":
            self.start()

    @property
    def is_down(self) -> bool:
        with self._lock:
            return self._outage is not None

    @property
    def outage_settled(self) -> bool:
        """The outage that began is wholly in place (a ``refused`` one listens no more)."""
        with self._lock:
            stopper = self._stopper
        return stopper is None or not stopper.is_alive()

    @property
    def requests_while_down(self) -> int:
        """Chat requests that reached the server during outages (a ``refused`` outage
        only sees those that slipped in while its socket closed)."""
        with self._lock:
            return self._down_requests

    def _answered(self) -> None:
        """One chat request answered by its behaviour: a planned outage may start now."""
        with self._lock:
            if self._planned is None:
                return
            left, outage = self._planned
            if left > 1:
                self._planned = (left - 1, outage)
                return
            self._planned, self._outage = None, outage
            if outage[0] == "refused":  # not from a handler thread: stop() waits for them
                self._stopper = threading.Thread(target=self.stop, name="fake-openai-down")
                self._stopper.start()

    def _outage_now(self, chat: bool) -> Outage | None:
        with self._lock:
            self._down_requests += chat and self._outage is not None
            return self._outage

    # -- behaviour ---------------------------------------------------------------------------

    def set_behavior(self, name: str, **params: Any) -> None:
        """The behaviour for every request once the script is used up."""
        with self._lock:
            self._default = _behavior((name, params))

    def enqueue(self, name: str, **params: Any) -> None:
        """Add one behaviour to the script (used by one request, in order)."""
        with self._lock:
            self._script.append(_behavior((name, params)))

    def script(self, *items: str | Behavior) -> None:
        """Add behaviours to the script: names, or (name, params) pairs."""
        behaviors = [_behavior(item) for item in items]
        with self._lock:
            self._script.extend(behaviors)

    def reset(self) -> None:
        """Back to ``normal``: empty script, no recorded requests, no outage."""
        self.come_back()
        with self._lock:
            self._default, self._script, self._requests = ("normal", {}), [], []
            self._down_requests = 0

    def _next_behavior(self) -> Behavior:
        with self._lock:
            return self._script.pop(0) if self._script else self._default

    # -- record ------------------------------------------------------------------------------

    @property
    def requests(self) -> list[dict[str, Any]]:
        """JSON bodies of the chat-completion requests received, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    def _record(self, body: dict[str, Any]) -> int:
        """Keep ``body``; its number (1 for the first chat request)."""
        with self._lock:
            self._requests.append(body)
            return len(self._requests)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: 'down' is clean

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.fake.verbose:
            super().log_message(format, *args)

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        kind = "invalid_request_error" if status < 500 else "server_error"
        error = {"message": message, "type": kind, "param": None, "code": status}
        self._send_json(status, {"error": error}, headers)

    def _authorized(self) -> bool:
        key = self.server.fake.api_key
        if key is None or self.headers.get("Authorization") == f"Bearer {key}":
            return True
        self._error(401, "Incorrect API key provided.")
        return False

    def _in_outage(self, chat: bool) -> bool:
        """Answer as an outage would (drop or error status); False when there is none."""
        outage = self.server.fake._outage_now(chat)
        if outage is None:
            return False
        mode, status = outage
        if mode == "refused":  # the socket is closing: drop the connection, no answer
            self.close_connection = True
        else:
            self._error(status, f"fake outage {status}")
        return True

    def do_GET(self) -> None:
        fake = self.server.fake
        if self._in_outage(chat=False):
            return
        if fake._default[0] == "html":
            self._send_html()
        elif self.path.rstrip("/") != "/v1/models":
            self._error(404, f"no route {self.path}")
        elif self._authorized():
            model = fake.model or DEFAULT_MODEL
            entry = {"id": model, "object": "model", "created": 0, "owned_by": "fake"}
            self._send_json(200, {"object": "list", "data": [entry]})

    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._error(404, f"no route {self.path}")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"null")
        except (ValueError, UnicodeDecodeError):
            self._error(400, "request body is not JSON")
            return
        if not isinstance(body, dict):
            self._error(400, "request body must be a JSON object")
            return
        self._serial = self.server.fake._record(body)
        self.server.fake.last_headers = {k.lower(): v for k, v in self.headers.items()}
        if self._in_outage(chat=True):
            return
        if self._authorized() and self._model_ok(body):
            self._answer(body, *self.server.fake._next_behavior())
            self.server.fake._answered()

    def _model_ok(self, body: dict[str, Any]) -> bool:
        wanted = self.server.fake.model
        if wanted is None or body.get("model") == wanted:
            return True
        self._error(404, f"The model `{body.get('model')}` does not exist.")
        return False

    def _send_html(self) -> None:
        data = b"<!doctype html><html><body>Chat UI</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _answer(self, body: dict[str, Any], name: str, params: dict[str, Any]) -> None:
        if name == "html":
            self._send_html()
            return
        if name == "status":
            status = int(params.get("status", 500))
            headers = {}
            if params.get("retry_after") is not None:
                headers["Retry-After"] = str(params["retry_after"])
            self._error(status, params.get("message", f"fake failure {status}"), headers)
            return
        if name == "slow" and self.server.fake._wake.wait(float(params.get("delay", 5.0))):
            self.close_connection = True  # stopped while waiting: drop the connection
            return
        if name in ("truncated", "no_choices"):
            self._broken(body, name)
            return
        serial = self._serial if self.server.fake.numbered else None
        content, reasoning = _reply(body, name, params, serial)
        if name in ("stall", "hang_up"):
            self._stall(body, content, float(params.get("delay", 5.0 if name == "stall" else 0.5)))
            return
        finish = "stop"
        if name == "length":
            content, finish = content[: int(params.get("chars", 12))], "length"
        if body.get("stream"):
            self._send_stream(body, content, reasoning, finish)
        else:
            self._send_json(200, _completion(body, content, reasoning, finish))

    def _send_stream(
        self, body: dict[str, Any], content: str, reasoning: str | None, finish: str = "stop"
    ) -> None:
        """Server-sent events as vLLM/llama.cpp send them: reasoning deltas, then content."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for field, text in (("reasoning_content", reasoning or ""), ("content", content)):
            for start in range(0, len(text), STREAM_PIECE):
                delta = {field: text[start : start + STREAM_PIECE]}
                self._send_event(_chunk(body, delta, None))
        self._send_event(_chunk(body, {}, finish))
        self.wfile.write(b"data: [DONE]\n\n")

    def _broken(self, body: dict[str, Any], name: str) -> None:
        """200 OK with a body cut in the middle of its JSON, or with no choices at all."""
        if name == "no_choices":
            self._send_json(200, {**_completion(body, "", None), "choices": []})
            return
        if body.get("stream"):  # one whole event, then one cut in its JSON
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self._send_event(_chunk(body, {"content": "A cap"}, None))
            event = json.dumps(_chunk(body, {"content": "tion"}, None))
            self.wfile.write(f"data: {event[: len(event) // 2]}\n\n".encode())
            self.close_connection = True
            return
        data = json.dumps(_completion(body, "A caption that never ends", None)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])  # then the connection closes
        self.close_connection = True

    def _stall(self, body: dict[str, Any], content: str, delay: float) -> None:
        """Start answering, then go silent (a server stuck mid-generation); the connection
        closes after ``delay`` (HTTP/1.0 without a length: the body ends there)."""
        if not body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"id": "chatcmpl-stall", "choices": [')
            self.wfile.flush()
        else:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self._send_event(_chunk(body, {"content": content[:STREAM_PIECE]}, None))
        self.server.fake._wake.wait(delay)
        self.close_connection = True

    def _send_event(self, payload: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n")
        self.wfile.flush()


def _messages_text(body: dict[str, Any], role: str | None = None) -> str:
    parts = []
    for message in body.get("messages") or []:
        if isinstance(message, dict) and (role is None or message.get("role") == role):
            content = message.get("content")
            parts.append(content if isinstance(content, str) else json.dumps(content))
    return "\n".join(parts)


def _reply(
    body: dict[str, Any], name: str, params: dict[str, Any], serial: int | None = None
) -> tuple[str, str | None]:
    user = _messages_text(body, "user")
    chinese = bool(_CJK.search(_messages_text(body)))
    words = prompt_keywords(user)
    caption = chinese_caption(words) if chinese else english_caption(words)
    if serial is not None:
        caption = (
            f"{caption[:-1]}（第{serial}次请求）。"
            if chinese
            else f"{caption[:-1]} (request {serial})."
        )
    replies: dict[str, tuple[str, str | None]] = {
        "normal": (caption, None),
        "slow": (caption, None),
        "stall": (caption, None),
        "hang_up": (caption, None),
        "length": (caption, None),
        "think_tags": (f"<think>\n{REASONING}\n</think>\n\n{caption}", None),
        "reasoning_field": (caption, REASONING),
        "reasoning_only": ("", caption),
        "lone_close_think": (f"{REASONING}\n</think>\n\n{caption}", None),
        "echo": (user, None),
        "empty": ("", None),
        "wrong_language": (english_caption(words) if chinese else chinese_caption(words), None),
        "content": (str(params.get("text", "")), params.get("reasoning")),
    }
    return replies[name]


def _completion(
    body: dict[str, Any], content: str, reasoning: str | None, finish: str = "stop"
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    tokens = len(content.split()) + 1
    return {
        "id": f"chatcmpl-fake-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model") or DEFAULT_MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 10, "completion_tokens": tokens, "total_tokens": 10 + tokens},
    }


def _chunk(body: dict[str, Any], delta: dict[str, str], finish: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake-stream",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model") or DEFAULT_MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible chat server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="'any' accepts every name")
    parser.add_argument("--behavior", default="normal", choices=sorted(BEHAVIORS))
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    fake = FakeOpenAI(
        host=args.host,
        port=args.port,
        model=None if args.model == "any" else args.model,
        verbose=args.verbose,
    )
    fake.set_behavior(args.behavior)
    with fake:
        print(f"fake OpenAI server at {fake.base_url} (model {args.model}); Ctrl-C stops it")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopping")


if __name__ == "__main__":
    main()
