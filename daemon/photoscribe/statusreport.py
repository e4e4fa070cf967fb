"""What `photoscribe status` and the web status page show: counts, failures, the daemon."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from photoscribe.fsutil import display
from photoscribe.records import State
from photoscribe.store import PhotoStore

DAEMON_STALE_S = 30.0  # a running daemon publishes its state every few seconds


def caption_problems(store: PhotoStore, limit: int = 3) -> list[tuple[str, int]]:
    """The commonest reasons, recorded in the index, why photos still wait for a caption."""
    rows = store.query(
        "SELECT error, count(*) AS n FROM photos WHERE state = ? AND error IS NOT NULL "
        "GROUP BY error ORDER BY n DESC, error LIMIT ?",
        (State.NEEDS_CAPTION.value, limit),
    )
    return [(row["error"], row["n"]) for row in rows]


def daemon_status(store: PhotoStore) -> dict | None:
    """What a running `photoscribe run` last published, or None if none runs."""
    from photoscribe.store.queue import read_state

    found = read_state(store, "daemon")
    if found is None:
        return None
    state, age = found
    alive = state.get("state") == "running" and age < DAEMON_STALE_S and _pid_alive(state)
    return {**state, "running": alive, "age_s": round(age, 1)}


def _pid_alive(state: dict) -> bool:
    try:
        os.kill(int(state.get("pid", 0)), 0)
    except PermissionError:
        return True  # runs as another user (the service)
    except (OSError, ValueError):
        return False
    return True


def status_report(store: PhotoStore, index_path: Path, failures: int = 10) -> dict[str, Any]:
    """Everything `status --json` prints (and the web page shows), JSON-ready."""
    from photoscribe.store.queue import queue_depth

    return {
        "index": str(index_path),
        "counts": {s.value: n for s, n in store.counts().items()},
        "queued": queue_depth(store),
        "daemon": daemon_status(store),
        "failures": store.failure_counts(),
        "last_failures": [
            {"path": display(r.path), "reason": r.error, "kind": r.failure}
            for r in store.last_failures(failures)
        ],
        "caption_problems": [{"reason": r, "photos": n} for r, n in caption_problems(store)],
    }
