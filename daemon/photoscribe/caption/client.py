"""The Captioner: one caption per call from any OpenAI-compatible chat server.

This is the only module that imports ``openai`` (lazily, when a Captioner is made).
The client's own retries are off; this module retries timeouts, connection errors, 429
(honouring Retry-After) and 5xx itself, with exponential backoff and jitter, and stops
asking for a while (circuit breaker) when the server keeps failing.
"""

from __future__ import annotations

import dataclasses
import email.utils
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from photoscribe.caption.clean import check_caption, clean_reply
from photoscribe.caption.prompt import (
    NO_THINK,
    Prompts,
    build_messages,
    keyword_labels,
    named,
    prompts_for,
)
from photoscribe.caption.secrets import Redactor, public_url, secrets_of
from photoscribe.config import LLMConfig
from photoscribe.errors import CaptionRejected, CaptionUnavailable
from photoscribe.records import Keyword

log = logging.getLogger(__name__)

FAILURES_TO_OPEN = 3  # unavailable outcomes in a row that open the circuit
COOLDOWN_S = 60.0  # how long an open circuit refuses before one trial request
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 20.0
RETRY_AFTER_MAX_S = 30.0
RETRYABLE_STATUS = (408, 409, 429)  # and every 5xx


@dataclass(frozen=True)
class Reply:
    content: str | None
    reasoning: str | None
    finish: str | None = None  # finish_reason: "stop", "length" (max_tokens ran out), ...


@dataclass(frozen=True)
class Probe:
    """One timed caption request, for `photoscribe doctor`."""

    latency_s: float
    caption: str
    reasoning_seen: bool  # the server returned reasoning (in <think> or a separate field)


class _Retry(Exception):
    """A failure worth another attempt, with the server's Retry-After if it sent one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class VisibleText:
    """Passes streamed content on, holding back a leading ``<think>…</think>`` block.

    ``thinking``: the model was asked to think, so content without an opening ``<think>``
    may still be reasoning (chat templates that put ``<think>`` in the prompt): it is held
    until ``</think>``, until reasoning arrives in its own field (then the content is the
    answer), or until the end (``finish``).
    """

    def __init__(self, on_text: Callable[[str], None], *, thinking: bool = False) -> None:
        self.on_text = on_text
        self.raw = ""  # everything the server sent as content
        self._state = "start"  # start → (thinking →) answer
        self._pending = ""
        self._hold = thinking

    def feed(self, piece: str) -> None:
        if not piece:
            return
        self.raw += piece
        if self._state == "answer":
            self.on_text(piece)
            return
        self._pending += piece
        head = self._pending.lstrip()
        if "</think>" in self._pending:
            self._answer(self._pending.split("</think>", 1)[1].lstrip())
        elif head.startswith("<think>"):
            self._state = "thinking"
        elif self._state == "start" and not self._hold and not "<think>".startswith(head):
            self._answer(head)

    def reasoning_seen(self) -> None:
        """Reasoning came in its own field: the content is the answer."""
        if self._hold and self._state == "start":
            self._hold = False
            head = self._pending.lstrip()
            if head and not "<think>".startswith(head):
                self._answer(head)

    def finish(self) -> None:
        """The stream ended: content still held back had no reasoning marker after all."""
        if self._state == "start" and self._pending.strip():
            self._answer(self._pending.strip())

    def _answer(self, text: str) -> None:
        self._state, self._pending = "answer", ""
        if text:
            self.on_text(text)


class CircuitBreaker:
    """Closed → open after ``threshold`` failures in a row → half-open (one trial) → …

    While the trial request is under way the circuit counts as available and other
    callers wait for its outcome (instead of being turned away as if the server were
    still down): they go ahead when it succeeds and fail fast when it reopens the circuit.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        threshold: int = FAILURES_TO_OPEN,
        cooldown: float = COOLDOWN_S,
    ) -> None:
        self._clock = clock
        self._threshold = threshold
        self._cooldown = cooldown
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)  # the trial ended
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False  # the half-open trial request is in flight
        self._last_error = ""

    def _remaining(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self._cooldown - self._clock())

    @property
    def available(self) -> bool:
        with self._lock:
            return self._remaining() == 0

    @property
    def on_trial(self) -> bool:
        """The half-open trial request is under way (other callers would wait for it)."""
        with self._lock:
            return self._trial

    def acquire(self, wait: float = 0.0) -> None:
        """Allow one request, or raise CaptionUnavailable while the circuit is open.

        During a trial, wait up to ``wait`` seconds for its outcome."""
        with self._settled:
            while True:
                remaining = self._remaining()
                if remaining > 0:
                    raise CaptionUnavailable(
                        f"{self._last_error} (failed {self._failures} times in a row; "
                        f"not asking again for {remaining:.0f} s)"
                    )
                if not self._trial:
                    break
                if not self._settled.wait(wait):
                    raise CaptionUnavailable(f"{self._last_error} (a trial request is under way)")
            self._trial = self._opened_at is not None

    def success(self) -> None:
        with self._settled:
            self._failures, self._opened_at, self._trial = 0, None, False
            self._settled.notify_all()

    def failure(self, message: str) -> None:
        with self._settled:
            self._settled.notify_all()
            self._failures += 1
            self._last_error = message
            opening = self._opened_at is None and self._failures >= self._threshold
            reopen, self._trial = opening or self._trial, False  # a failed trial reopens
            if reopen:
                self._opened_at = self._clock()
                log.warning("LLM unavailable; no captions for %.0f s: %s", self._cooldown, message)

    def release(self) -> None:
        """End a trial that ended in neither success nor failure (e.g. a bug)."""
        with self._settled:
            self._trial = False
            self._settled.notify_all()


class Captioner:
    """Asks the LLM for a caption; thread-safe, one instance per configuration."""

    def __init__(
        self,
        cfg: LLMConfig,
        api_key: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        name_of: Callable[[str], str] | None = None,
    ) -> None:
        import openai

        # An LLMConfig made outside a Config has no language yet: English, as before.
        self.cfg = cfg if cfg.language else dataclasses.replace(cfg, language="en")
        self._name_of = name_of  # concept id → its name in the caption's language
        self._openai = openai
        self._client = openai.OpenAI(
            base_url=cfg.base_url,
            api_key=api_key or "not-needed",
            timeout=cfg.timeout,
            max_retries=0,
            default_headers=cfg.extra_headers or None,
        )
        self._url = public_url(cfg.base_url)  # for messages: no password
        self._redact = Redactor(secrets_of(api_key, cfg.base_url, cfg.extra_headers))
        self._sleep = sleep
        self._random = random.Random()
        self._breaker = CircuitBreaker(clock, cooldown=cfg.cooldown)
        self._template_kwargs = True  # False once a server refuses chat_template_kwargs
        self._prompts = prompts_for(
            self.cfg.language, cfg.style, cfg.system_prompt, cfg.user_prompt
        )

    @property
    def available(self) -> bool:
        """False while the circuit breaker is open (captions would fail at once)."""
        return self._breaker.available

    @property
    def on_trial(self) -> bool:
        """A trial request is finding out whether the server is back (a caption asked now
        would wait for its outcome)."""
        return self._breaker.on_trial

    @property
    def url(self) -> str:
        """The server's base URL, without a password (for messages)."""
        return self._url

    def close(self) -> None:
        self._client.close()

    def list_models(self) -> list[str]:
        """The model names the server lists; CaptionUnavailable when it cannot be asked."""
        try:
            return [model.id for model in self._client.models.list().data]
        except self._openai.APIError as exc:
            error = self._translate(exc)
            raise CaptionUnavailable(getattr(error, "message", str(error))) from exc
        except (ValueError, AttributeError, TypeError) as exc:  # openai on a non-JSON 200
            raise CaptionUnavailable(self._malformed(f"not a model list: {exc}")) from exc

    def stream(
        self,
        keywords: Sequence[Keyword],
        on_text: Callable[[str], None],
        context: str | None = None,
    ) -> str:
        """Stream a caption: ``on_text`` gets the visible text as it is generated (reasoning
        held back); returns the whole caption, validated. One attempt, no retries."""
        keywords = named(keywords, self._name_of)
        messages = self._messages(keywords, self._prompts, context)
        visible = VisibleText(on_text, thinking=self.cfg.thinking)
        reasoning: list[str] = []
        finish = None
        try:
            chunks = self._client.chat.completions.create(**self._params(messages), stream=True)
            for chunk in chunks:
                choice = chunk.choices[0] if chunk.choices else None
                if choice is None:
                    continue
                finish = choice.finish_reason or finish
                delta = choice.delta
                extra = (getattr(delta, "model_extra", None) or {}) if delta else {}
                reasoning.append(extra.get("reasoning_content") or extra.get("reasoning") or "")
                if reasoning[-1]:
                    visible.reasoning_seen()
                visible.feed((delta.content if delta else None) or "")
        except self._openai.APIError as exc:
            error = self._translate(exc)
            raise CaptionUnavailable(getattr(error, "message", str(error))) from exc
        except json.JSONDecodeError as exc:
            raise CaptionUnavailable(self._malformed(exc)) from exc
        if finish is None:  # the connection closed before the server said it was done
            raise CaptionUnavailable(
                f"the LLM server at {self.cfg.base_url} ended the answer before finishing it "
                "(the stream stopped without a finish_reason); check the server's log, and "
                "that llm.base_url points at an OpenAI-compatible /v1 endpoint"
            )
        self._check_finish(finish)
        visible.finish()
        text = clean_reply(visible.raw, "".join(reasoning) or None)
        return check_caption(
            text,
            labels=keyword_labels(keywords),
            language=self.cfg.language,
            had_reasoning=any(reasoning),
            prompts=self._prompts,
        )

    def probe(
        self, keywords: Sequence[Keyword], clock: Callable[[], float] = time.monotonic
    ) -> Probe:
        """Ask for one caption, timed, reporting whether reasoning came back."""
        keywords = named(keywords, self._name_of)
        messages = self._messages(keywords, self._prompts)
        started = clock()
        reply = reply_of(self._send(messages))
        latency = clock() - started
        self._check_finish(reply.finish)
        raw = reply.content or ""
        text = clean_reply(reply.content, reply.reasoning)
        caption = check_caption(
            text,
            labels=keyword_labels(keywords),
            language=self.cfg.language,
            had_reasoning=bool(reply.reasoning),
            prompts=self._prompts,
        )
        reasoning = bool(reply.reasoning) or "<think>" in raw or "</think>" in raw
        return Probe(latency, caption, reasoning)

    def caption(self, keywords: Sequence[Keyword], context: str | None = None) -> str:
        """A caption for a photo showing ``keywords`` (``context``: facts from its EXIF).

        Raises CaptionUnavailable when the server is down, too slow, failing or misconfigured
        (the caption can wait for a later run), CaptionRejected when the reply is unusable
        twice in a row.
        """
        keywords = named(keywords, self._name_of)
        labels = keyword_labels(keywords)
        if not labels:
            raise CaptionRejected("no keywords to describe the photo from")
        self._breaker.acquire(wait=self._longest_request())
        try:
            try:
                return self._ask(keywords, labels, self._prompts, context)
            except CaptionRejected as exc:
                log.debug("caption rejected (%s); asking once more, more strictly", exc)
            return self._ask(keywords, labels, self._prompts.stricter(), context)
        finally:
            self._breaker.release()

    def answer_once(self, system: str, user: str) -> str:
        """One short request outside captioning (e.g. a search query's translation): no
        retries, thinking off, the reply cleaned of reasoning. Raises CaptionUnavailable or
        CaptionRejected like ``caption``."""
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": f"{user} {NO_THINK}"},
        ]
        try:
            try:
                completion = self._create(messages, thinking=False)
            except self._openai.APIError as exc:
                raise self._translate(exc) from exc
        except _Retry as exc:  # no retry here
            raise CaptionUnavailable(exc.message) from exc
        reply = reply_of(completion)
        self._check_finish(reply.finish)
        return clean_reply(reply.content, reply.reasoning)

    def _check_finish(self, finish: str | None) -> None:
        """A reply cut at max_tokens is rejected, not trimmed: half a sentence (or a
        sentence whose end would change its meaning) must not become a caption, and the
        fix is the user's (a larger llm.max_tokens, or thinking off)."""
        if finish == "length":
            raise CaptionRejected(
                f"the caption was cut off at llm.max_tokens ({self.cfg.max_tokens}); raise "
                "llm.max_tokens (a thinking model needs room for its reasoning too)"
            )
        if finish == "content_filter":
            raise CaptionRejected("the LLM server's content filter withheld the caption")

    def _malformed(self, detail: object) -> str:
        return (
            f"the LLM server at {self.cfg.base_url} sent a reply that is cut off or not JSON "
            f"({detail}); check the server's log, or that llm.base_url points at an "
            "OpenAI-compatible /v1 endpoint"
        )

    def _longest_request(self) -> float:
        """How long one caption may take with its retries (a trial's outcome is due by then)."""
        return self.cfg.timeout * (self.cfg.retries + 1) + self.cfg.retries * RETRY_AFTER_MAX_S + 1

    def _messages(
        self, keywords: Sequence[Keyword], prompts: Prompts, context: str | None = None
    ) -> list[dict[str, str]]:
        return build_messages(
            keywords,
            language=self.cfg.language,
            thinking=self.cfg.thinking,
            prompts=prompts,
            context=context,
        )

    def _ask(
        self,
        keywords: Sequence[Keyword],
        labels: list[str],
        prompts: Prompts,
        context: str | None = None,
    ) -> str:
        try:
            completion = self._send(self._messages(keywords, prompts, context))
        except CaptionUnavailable as exc:
            self._breaker.failure(str(exc))
            raise
        self._breaker.success()
        reply = reply_of(completion)
        self._check_finish(reply.finish)
        text = clean_reply(reply.content, reply.reasoning)
        return check_caption(
            text,
            labels=labels,
            language=self.cfg.language,
            had_reasoning=bool(reply.reasoning),
            prompts=prompts,
        )

    def _send(self, messages: list[dict[str, str]]) -> Any:
        """The completion, retrying transient failures; CaptionUnavailable when out of tries."""
        attempts = self.cfg.retries + 1
        for attempt in range(attempts):
            try:
                return self._request(messages)
            except _Retry as retry:
                last = retry
            log.debug("LLM attempt %d/%d failed: %s", attempt + 1, attempts, last.message)
            if attempt + 1 < attempts:
                self._sleep(self._delay(attempt, last.retry_after))
        tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        raise CaptionUnavailable(f"{last.message} (gave up after {tries})")

    def _request(self, messages: list[dict[str, str]]) -> Any:
        try:
            return self._create(messages)
        except self._openai.APIError as exc:
            if not self._refuses_template_kwargs(exc):
                raise self._translate(exc) from exc
        log.info("%s refuses chat_template_kwargs; relying on /no_think", self._url)
        self._template_kwargs = False
        try:
            return self._create(messages)
        except self._openai.APIError as exc:
            raise self._translate(exc) from exc

    def _create(self, messages: list[dict[str, str]], thinking: bool | None = None) -> Any:
        """One completion; a body cut off (the server hung up) is worth another attempt."""
        try:
            params = self._params(messages, thinking)
            completion = self._client.chat.completions.create(**params)
        except json.JSONDecodeError as exc:
            raise _Retry(self._malformed(exc)) from exc
        if isinstance(completion, str):  # openai hands over a 200 that is not JSON as text
            raise CaptionUnavailable(self._malformed(f"got text: {completion[:60]!r}"))
        return completion

    def _refuses_template_kwargs(self, exc: Exception) -> bool:
        bad_request = isinstance(exc, self._openai.BadRequestError)
        return bad_request and self._template_kwargs and "chat_template_kwargs" in str(exc)

    def _params(
        self, messages: list[dict[str, str]], thinking: bool | None = None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.cfg.model,
            "messages": messages,
            "max_tokens": self.cfg.max_tokens,
            "temperature": self.cfg.temperature,
        }
        body: dict[str, Any] = {}
        if self._template_kwargs:
            wanted = self.cfg.thinking if thinking is None else thinking
            body["chat_template_kwargs"] = {"enable_thinking": wanted}
        body.update(self.cfg.extra_body)  # the user's own settings win
        if body:
            params["extra_body"] = body
        return params

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, RETRY_AFTER_MAX_S)
        backoff = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**attempt)
        return backoff * (0.5 + 0.5 * self._random.random())

    def _translate(self, exc: Exception) -> Exception:
        """An openai error → _Retry (transient) or CaptionUnavailable (needs the user)."""
        oa, url = self._openai, self._url
        if isinstance(exc, oa.APITimeoutError):
            return _Retry(
                f"no reply from the LLM server at {url} within {self.cfg.timeout:g} s; "
                "check that it is running and not overloaded, or raise llm.timeout"
            )
        if isinstance(exc, oa.APIConnectionError):
            cause = self._redact(str(exc.__cause__ or exc))
            return _Retry(
                f"cannot reach the LLM server at {url} ({cause}); "
                "check that it is running and that llm.base_url is right"
            )
        if isinstance(exc, oa.APIStatusError):
            return self._translate_status(exc)
        return CaptionUnavailable(
            f"the LLM server at {url} sent something that is not an OpenAI chat completion "
            f"({self._redact(str(exc))}); check that llm.base_url points at an "
            "OpenAI-compatible /v1 endpoint"
        )

    def _translate_status(self, exc: Any) -> Exception:
        url, model, code = self._url, self.cfg.model, exc.status_code
        detail = f"HTTP {code}: {self._redact(server_message(exc))}"
        if code == 429:
            return _Retry(
                f"the LLM server at {url} is rate limiting requests ({detail}); "
                "lower llm.concurrency or try later",
                retry_after=retry_after(exc.response.headers),
            )
        if code >= 500 or code in RETRYABLE_STATUS:
            return _Retry(f"the LLM server at {url} failed ({detail}); check the server's log")
        if code in (401, 403):
            return CaptionUnavailable(
                f"the LLM server at {url} refused the API key ({detail}); set llm.api_key_env "
                "to the name of an environment variable holding a valid key (or llm.api_key)"
            )
        if code == 404:
            return CaptionUnavailable(
                f"the LLM server at {url} does not know model {model!r} ({detail}); set "
                f"llm.model to a name listed at {url.rstrip('/')}/models, and check that "
                "llm.base_url ends in /v1"
            )
        return CaptionUnavailable(
            f"the LLM server at {url} refused the request ({detail}); "
            "check llm.model, llm.max_tokens and llm.temperature"
        )


def reply_of(completion: Any) -> Reply:
    """Content and reasoning (``reasoning_content`` or ``reasoning``) of the first choice."""
    choices = getattr(completion, "choices", None)
    if not choices:
        raise CaptionRejected("the LLM reply holds no answer")
    message = choices[0].message
    extra = getattr(message, "model_extra", None) or {}
    reasoning = None
    for name in ("reasoning_content", "reasoning"):
        value = getattr(message, name, None) or extra.get(name)
        if isinstance(value, str) and value.strip():
            reasoning = value
            break
    content = message.content if isinstance(message.content, str) else None
    finish = getattr(choices[0], "finish_reason", None)
    return Reply(content, reasoning, finish if isinstance(finish, str) else None)


def server_message(exc: Any) -> str:
    """The server's own error message, short."""
    body = getattr(exc, "body", None)
    message = None
    if isinstance(body, Mapping):
        inner = body.get("error")
        message = inner.get("message") if isinstance(inner, Mapping) else body.get("message")
        message = message or (inner if isinstance(inner, str) else None)
    text = " ".join(str(message or body or exc).split())
    return text if len(text) <= 200 else text[:199] + "…"


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` / ``retry-after`` (seconds or an HTTP date)."""
    try:
        return max(0.0, float(headers["retry-after-ms"]) / 1000)
    except (KeyError, ValueError):
        pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
