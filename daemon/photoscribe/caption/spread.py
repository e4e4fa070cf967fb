"""Captions spread over several LLM servers (replicas of one model): ``llm.base_url`` a list.

One ``Captioner`` per server, each with its own circuit breaker: that is the health check
(a server that keeps failing is not asked until its cooldown is over, then one trial
request finds out whether it is back). Each caption goes to the available server with the
fewest requests in flight (ties in turn); when that one is unavailable (down, too slow,
failing) the caption is asked of the next one, each server at most once per caption. A
rejected reply (CaptionRejected) is no server's fault and is not asked again elsewhere.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Protocol

from photoscribe.errors import CaptionUnavailable
from photoscribe.records import Keyword

log = logging.getLogger(__name__)


class Endpoint(Protocol):
    """What Spread needs of one server (a Captioner)."""

    @property
    def available(self) -> bool: ...

    @property
    def on_trial(self) -> bool: ...

    @property
    def url(self) -> str: ...

    def caption(self, keywords: Sequence[Keyword], context: str | None = None) -> str: ...

    def close(self) -> None: ...


class Spread:
    """A caption source over several endpoints; thread-safe (CaptionStage's threads)."""

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        if not endpoints:
            raise ValueError("Spread needs at least one endpoint")
        self.endpoints = tuple(endpoints)
        self._lock = threading.Lock()
        self._in_flight = [0] * len(self.endpoints)
        self._turn = 0  # where the round robin among equally busy endpoints goes on

    @property
    def available(self) -> bool:
        """Some server may be asked (not every circuit breaker is open)."""
        return any(endpoint.available for endpoint in self.endpoints)

    def in_flight(self) -> tuple[int, ...]:
        """Requests under way, per endpoint (for tests and status)."""
        with self._lock:
            return tuple(self._in_flight)

    def caption(self, keywords: Sequence[Keyword], context: str | None = None) -> str:
        """A caption from the least busy available server, else from the next one.

        Raises CaptionUnavailable when no server gave one (each was asked at most once, or
        skipped while its circuit is open), CaptionRejected at once when a reply is unusable.
        """
        tried: set[int] = set()
        last: CaptionUnavailable | None = None
        while (index := self._pick(tried)) is not None:
            tried.add(index)
            endpoint = self.endpoints[index]
            try:
                return endpoint.caption(keywords, context)
            except CaptionUnavailable as exc:
                last = exc
                log.info(
                    "LLM server %s failed, skipping it for this caption: %s", endpoint.url, exc
                )
            finally:
                with self._lock:
                    self._in_flight[index] -= 1
        count = len(self.endpoints)
        servers = "the LLM server" if count == 1 else f"all {count} LLM servers"
        if last is None:  # none was available to ask (every circuit open)
            raise CaptionUnavailable(
                f"{servers} failed and are not asked again before llm.cooldown is over; "
                "check that they are running"
            )
        raise CaptionUnavailable(f"{servers} failed; the last: {last}") from last

    def _pick(self, tried: set[int]) -> int | None:
        """The endpoint to ask next (its request counted in flight), or None.

        Among the available endpoints not tried yet for this caption: not one whose trial
        request is under way when there is another (a caption would wait for the trial's
        outcome), then the fewest requests in flight, ties in turn."""
        with self._lock:
            count = len(self.endpoints)
            order = [(self._turn + step) % count for step in range(count)]
            ready = [i for i in order if i not in tried and self.endpoints[i].available]
            settled = [i for i in ready if not self.endpoints[i].on_trial]
            choices = settled or ready
            if not choices:
                return None
            index = min(choices, key=lambda i: self._in_flight[i])  # the first of the least
            self._in_flight[index] += 1
            self._turn = (index + 1) % count
            return index

    def close(self) -> None:
        for endpoint in self.endpoints:
            endpoint.close()
