"""Prometheus metrics of the daemon: outcomes, queue, stage latencies, LLM and model state.

Off by default (`metrics.enabled`). Each daemon owns its own registry (no process-wide
singleton), served on a localhost port by prometheus_client's small WSGI server.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from photoscribe import __version__
from photoscribe.caption.secrets import public_url
from photoscribe.errors import ConfigError

log = logging.getLogger(__name__)

STAGES = ("decode", "tag", "caption", "write")  # decode: read + content hash + decode
# Per-photo stage times: from a millisecond (a cached hash) to minutes (a slow LLM).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


@dataclass(frozen=True)
class Snapshot:
    """What the daemon reports on each housekeeping pass."""

    queued: int
    in_progress: int
    captions_waiting: int
    llm: str  # "ok", "down" or "off"
    model_loaded: bool
    photos_per_s: float


class Metrics:
    """The daemon's metrics in a registry of their own."""

    enabled = True

    def __init__(self, model_id: str, base_url: str | None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

        self.registry = CollectorRegistry()
        r = self.registry
        self.photos = Counter(
            "photoscribe_photos", "Photos finished, by outcome", ["outcome"], registry=r
        )
        self.queue = Gauge("photoscribe_queue_depth", "Photos waiting in the queue", registry=r)
        self.in_progress = Gauge(
            "photoscribe_photos_in_progress", "Photos taken from the queue, not done", registry=r
        )
        self.captions_waiting = Gauge(
            "photoscribe_captions_waiting", "Tagged photos whose caption is still due", registry=r
        )
        self.llm_up = (  # absent while captions are off
            Gauge("photoscribe_llm_up", "1 while the LLM server answers", registry=r)
            if base_url
            else None
        )
        self.model_loaded = Gauge(
            "photoscribe_model_loaded", "1 while the CLIP model is in memory", registry=r
        )
        self.rate = Gauge(
            "photoscribe_photos_per_second", "Photos written per second, last minute", registry=r
        )
        self.stage = Histogram(
            "photoscribe_stage_duration_seconds",
            "Time one photo spent in a stage",
            ["stage"],
            buckets=BUCKETS,
            registry=r,
        )
        Info("photoscribe_build", "photoscribe version and models", registry=r).info(
            {"version": __version__, "clip_model": model_id, "llm": public_url(base_url or "off")}
        )
        for stage in STAGES:  # every series exists from the start, at zero
            self.stage.labels(stage=stage)

    def record(self, outcome: str) -> None:
        self.photos.labels(outcome=outcome).inc()

    def observe(self, stage: str, seconds: float) -> None:
        self.stage.labels(stage=stage).observe(max(seconds, 0.0))

    def update(self, snap: Snapshot) -> None:
        self.queue.set(snap.queued)
        self.in_progress.set(snap.in_progress)
        self.captions_waiting.set(snap.captions_waiting)
        self.model_loaded.set(1 if snap.model_loaded else 0)
        self.rate.set(snap.photos_per_s)
        if self.llm_up is not None:
            self.llm_up.set(1 if snap.llm == "ok" else 0)

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class MetricsServer:
    """The HTTP endpoint (`/metrics`, any path) on ``address:port``; stopped with the daemon."""

    def __init__(self, metrics: Metrics, address: str, port: int) -> None:
        from prometheus_client import start_http_server

        try:
            self._server, self._thread = start_http_server(
                port, addr=address, registry=metrics.registry
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {address}:{port}: {exc.strerror or exc}; "
                "choose another metrics.port or set metrics.enabled: false"
            ) from exc
        self.port = int(self._server.server_address[1])
        log.info("metrics at http://%s:%d/metrics", address, self.port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class NoMetrics:
    """Stands in when metrics are off: every call is free."""

    enabled = False

    def record(self, outcome: str) -> None:
        pass

    def observe(self, stage: str, seconds: float) -> None:
        pass

    def update(self, snap: Snapshot) -> None:
        pass


def build_metrics(enabled: bool, model_id: str, base_url: str | None) -> Any:
    return Metrics(model_id, base_url) if enabled else NoMetrics()
