"""Joining a Ray cluster, or starting one on this machine, for one scan."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from photoscribe.errors import ClusterError

INSTALL = "pip install 'photoscribe[cluster]' (the same version on every machine)"


def ray_module() -> Any:
    try:
        import ray
        import ray.data  # Ray Data comes with the extra, not with a plain ray
    except ImportError as exc:
        raise ClusterError(f"--cluster needs Ray and Ray Data: {INSTALL}") from exc
    return ray


@dataclass
class Session:
    """The Ray connection of one cluster scan; ``close`` leaves a cluster it joined running."""

    ray: Any
    address: str
    started_here: bool  # True: this scan started Ray (``local``), False: it joined one

    def close(self) -> None:
        if self.ray.is_initialized():
            self.ray.shutdown()


def connect(address: str) -> Session:
    """``local``: a one-machine Ray started for this scan (every CPU);
    ``auto``: the cluster this machine joined with ``ray start``; ``HOST:PORT`` or
    ``ray://HOST:10001``: that cluster's head."""
    ray = ray_module()
    options: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.WARNING,
        "log_to_driver": False,  # the stages' failures come back as results, with reasons
    }
    try:
        if address == "local":
            ray.init(**options)
        else:
            _use_token_if_there()
            ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        hint = (
            "start one with `ray start --head` (see the README's cluster section), "
            "or use --cluster local"
            if address == "auto"
            else "check the address and that `ray status` works on the head node; a "
            "cluster with token authentication needs its token here too: "
            "the head's ~/.ray/auth_token copied to this machine, or RAY_AUTH_TOKEN"
        )
        raise ClusterError(f"cannot reach a Ray cluster at {address!r} ({exc}); {hint}") from exc
    _quiet_ray_data()
    return Session(ray, address, started_here=address == "local")


def _use_token_if_there() -> None:
    """Joining a cluster by address, Ray sends its token only in token mode; `ray start`
    turns that mode on by itself when it finds a token, so do the same here."""
    if os.environ.get("RAY_AUTH_MODE"):
        return  # the user chose
    token_file = os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token"
    if not (os.environ.get("RAY_AUTH_TOKEN") or Path(token_file).is_file()):
        return
    try:  # what `ray start` calls (Ray 2.60): sets the mode and rereads Ray's config
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # another Ray: the variable, read when Ray starts up here
        os.environ["RAY_AUTH_MODE"] = "token"
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _quiet_ray_data() -> None:
    """photoscribe prints its own progress; Ray Data's would interleave with it."""
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray").setLevel(logging.WARNING)
