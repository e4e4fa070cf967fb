"""The OpenCLIP model: weights resolution, device and precision, lazy locked load.

torch and open_clip are imported only when a model is actually loaded, so commands
that never need it (status, text search, doctor) start fast.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from photoscribe.config import ModelConfig
from photoscribe.errors import ModelError
from photoscribe.vision.noinit import weights_replace_init
from photoscribe.vision.precision import (
    Decision,
    cuda_precision,
    decide_cpu,
    host_key,
    model_rate_of,
    read_cached,
    read_cpuinfo,
)
from photoscribe.vision.pretrained import open_clip_lookup
from photoscribe.vision.quicktower import Later, keep_tower, quick_loaded, read_tower
from photoscribe.vision.threads import available_cores, torch_threads

PretrainedLookup = Callable[[str, str], tuple[dict[str, Any], list[str]]]

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
HOW_TO_PROVIDE = (
    "on a machine with internet, download the file {filename} of the model-hub repository {repo} "
    "(or copy the hub cache after one `photoscribe scan` there), put it on this machine and set "
    "model.pretrained to its path, e.g. pretrained: /var/lib/photoscribe/{filename}"
)


@dataclass(frozen=True)
class Weights:
    """Where the weights come from: a local file, or an open_clip pretrained tag."""

    source: str  # a path or a tag
    is_file: bool
    model_id: str  # identifies arch + weights in the index and the caches


def looks_like_path(value: str) -> bool:
    return os.sep in value or value.endswith(WEIGHT_SUFFIXES) or value.startswith("~")


def file_fingerprint(path: Path) -> str:
    """A fast content fingerprint: size + first and last 4 MiB."""
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(4 << 20))
        if size > 8 << 20:
            f.seek(-(4 << 20), os.SEEK_END)
            h.update(f.read())
    return h.hexdigest()[:16]


def resolve_weights(cfg: ModelConfig) -> Weights:
    """Check the configured weights exist (or can be fetched) before loading torch."""
    if looks_like_path(cfg.pretrained):
        path = Path(cfg.pretrained).expanduser()
        if not path.is_file():
            raise ModelError(
                f"model.pretrained is {path}, but no such file exists; point it at a "
                f"{'/'.join(WEIGHT_SUFFIXES)} weights file for {cfg.arch}"
            )
        return Weights(str(path), True, f"{cfg.arch}:{path.stem}:{file_fingerprint(path)}")
    return Weights(cfg.pretrained, False, f"{cfg.arch}:{cfg.pretrained}")


def _hub_file(arch: str, tag: str, lookup: PretrainedLookup) -> tuple[str, str] | None:
    pcfg, known_tags = lookup(arch, tag)
    if not pcfg:
        known = ", ".join(known_tags) or "none"
        raise ModelError(
            f"open_clip has no pretrained tag {tag!r} for {arch!r} (known: {known}); "
            "fix model.pretrained or give a path to a weights file"
        )
    hub = pcfg.get("hf_hub", "")
    if not hub:
        return None
    parts = hub.rstrip("/").split("/")
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:]) or "open_clip_model.safetensors"
    return repo, filename


def _cached(repo: str, filename: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    names = (filename, "open_clip_model.safetensors", "open_clip_pytorch_model.bin")
    return any(isinstance(try_to_load_from_cache(repo, n), str) for n in names)


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def ensure_downloadable(
    cfg: ModelConfig, weights: Weights, lookup: PretrainedLookup = open_clip_lookup
) -> str:
    """Where the weights will come from; fails in seconds, with a how-to, when a pretrained
    tag can't be had offline. The one decision for both scan and doctor (which passes a
    ``lookup`` that does not import torch)."""
    if weights.is_file:
        return weights.source
    hub = _hub_file(cfg.arch, weights.source, lookup)
    if hub is None:
        return f"pretrained tag {weights.source!r}: downloaded by open_clip from its URL"
    if _cached(*hub):
        return f"pretrained tag {weights.source!r}: in the model hub cache ({hub[0]})"
    if _hub_reachable():
        return f"pretrained tag {weights.source!r}: downloaded from the model hub on first use"
    raise ModelError(
        f"the CLIP weights {cfg.arch}/{weights.source} are not on this machine and the model hub "
        "cannot be reached (offline). To provide them: "
        + HOW_TO_PROVIDE.format(arch=cfg.arch, repo=hub[0], filename=hub[1])
    )


def unknown_arch(arch: str) -> ModelError:
    return ModelError(
        f"open_clip knows no architecture {arch!r}; see open_clip.list_models() "
        "or set model.config_dir"
    )


def pick_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(
            f"model.device is {requested!r} but no CUDA GPU is usable here; use 'auto' or 'cpu'"
        )
    if requested != "cpu" and not requested.startswith("cuda"):
        raise ModelError(f"model.device must be auto, cpu or cuda[:N], not {requested!r}")
    return requested


def explicit_precision(precision: str, device: str) -> str:
    """A precision set in model.precision (it wins over measuring), checked for the device."""
    if precision == "fp16" and not device.startswith("cuda"):
        raise ModelError("model.precision fp16 is not supported on the CPU; use auto, bf16 or fp32")
    return precision


def to_dtype(precision: str) -> Any:
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def trim_heap() -> bool:
    """Give the C heap's free pages back to the system (glibc ``malloc_trim(0)``).

    Freed tensors go back to malloc, which keeps them in its arenas (one per thread that
    allocated: decode workers, torch's intra-op threads), so RSS would not drop without
    this. False where the C library has no malloc_trim (e.g. musl)."""
    try:
        libc = ctypes.CDLL(None)
        malloc_trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False
    malloc_trim.argtypes = [ctypes.c_size_t]
    malloc_trim(0)
    return True


class ClipModel:
    """An OpenCLIP model loaded on first use; thread-safe load/unload."""

    def __init__(
        self,
        cfg: ModelConfig,
        *,
        trim: Callable[[], object] = trim_heap,
        cache_dir: Path | None = None,
        decode_workers: int = 0,
    ) -> None:
        """``cache_dir``: where ``precision: auto`` keeps what it measured (None: measure
        at every load); ``decode_workers``: the decode processes that run beside the model
        (the torch threads leave them their share of the cores)."""
        self.cfg = cfg
        self.weights = resolve_weights(cfg)
        self.cache_dir = cache_dir
        self.decode_workers = decode_workers
        self._trim = trim  # returns freed memory to the system after an unload
        self._lock = threading.Lock()
        self._loaded: dict[str, Any] | None = None
        self._full: Later | None = None  # the full model behind a kept image tower
        self._background_error: BaseException | None = None  # a background load's failure

    @property
    def model_id(self) -> str:
        return self.weights.model_id

    def load(self) -> dict[str, Any]:
        with self._lock:
            return self._load_locked()

    def _load_locked(self, *, keep_error: bool = False) -> dict[str, Any]:
        if self._loaded is None:
            failed, self._background_error = self._background_error, None
            if failed is not None:  # the background load's error, raised here once
                raise failed
            try:
                self._loaded = self._load()
            except Exception as exc:
                if keep_error:
                    self._background_error = exc
                raise
        return self._loaded

    def load_in_background(self, then: Callable[[], object] | None = None) -> threading.Thread:
        """Load in a thread (then call ``then``) while the caller goes on; a caller that
        needs the model meanwhile waits for it in ``load``, which raises the thread's error."""

        def run() -> None:
            try:
                with self._lock:
                    self._load_locked(keep_error=True)
                if then is not None:
                    then()  # its error, if any, comes again when the caller does the same
            except Exception as exc:
                log.debug("loading the model in the background failed: %s", exc)

        thread = threading.Thread(target=run, name="model-load", daemon=True)
        thread.start()
        return thread

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    @property
    def quick(self) -> bool:
        """Whether the model loaded is a kept image tower (vision/quicktower.py)."""
        return self._loaded is not None and bool(self._loaded.get("quick"))

    def unload(self) -> None:
        """Drop the model so its memory goes back to the system (loaded again on use)."""
        with self._lock:
            if self._loaded is None:
                return
            device = self._loaded["device"]
            self._loaded, self._full = None, None
        import gc

        gc.collect()
        if device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
        self._trim()

    def _load(self) -> dict[str, Any]:
        """The image tower kept by an earlier load when there is one (CPU only), else the
        full model (whose image tower is then kept for the next load)."""
        quick = self._quick_load()
        if quick is not None:
            return quick
        loaded = self._full_load()
        self._keep_tower(loaded)
        return loaded

    def _quick_load(self) -> dict[str, Any] | None:
        if not self.cfg.quick_start or self.cache_dir is None:
            return None
        if pick_device(self.cfg.device) != "cpu":
            return None
        threads = torch_threads(self.cfg.threads, available_cores(), self.decode_workers)
        decision = self._known_precision(threads)
        found = decision and read_tower(self.cache_dir, self.model_id, decision.precision)
        if not found:
            return None
        import torch

        torch.set_num_threads(threads)
        module, info = found
        full = Later(lambda: self._full_load(decision))
        self._full = full
        log.info(
            "CLIP model %s on cpu (%s; image tower kept from an earlier load)",
            self.model_id,
            decision.describe(),
        )
        return quick_loaded(module, info, full, to_dtype(decision.precision), decision)

    def _known_precision(self, threads: int) -> Decision | None:
        """The precision without the model: set, or chosen on this host before (cached)."""
        if self.cfg.precision != "auto":
            explicit_precision(self.cfg.precision, "cpu")
            return Decision(self.cfg.precision, "model.precision")
        assert self.cache_dir is not None
        return read_cached(self.cache_dir, self._host_key("cpu", threads))

    def _keep_tower(self, loaded: dict[str, Any]) -> None:
        """Keep the image tower for the next load; failing costs only that speed-up."""
        if not self.cfg.quick_start or self.cache_dir is None or loaded["device"] != "cpu":
            return
        try:
            keep_tower(self.cache_dir, loaded, self.model_id)
        except Exception as exc:  # torch.jit raises many types; a full cache disk OSError
            log.warning("could not keep the image tower in %s: %s", self.cache_dir, exc)

    def _full_load(self, decision: Decision | None = None) -> dict[str, Any]:
        """open_clip's model in the precision ``decision`` (None: chosen now)."""
        import open_clip
        import torch

        if self.cfg.config_dir:
            open_clip.add_model_config(self.cfg.config_dir)
        if self.cfg.arch not in open_clip.list_models():
            raise unknown_arch(self.cfg.arch)
        ensure_downloadable(self.cfg, self.weights)
        device = pick_device(self.cfg.device)
        if self.cfg.precision != "auto":
            explicit_precision(self.cfg.precision, device)
        threads = torch.get_num_threads()
        if device == "cpu":
            threads = torch_threads(self.cfg.threads, available_cores(), self.decode_workers)
            torch.set_num_threads(threads)
        try:
            with weights_replace_init(self.weights.source):  # no random start to overwrite
                model, _, preprocess = open_clip.create_model_and_transforms(
                    self.cfg.arch, pretrained=self.weights.source, device=device
                )
        except Exception as exc:  # torch/safetensors raise many types for a bad file
            raise ModelError(
                f"cannot load CLIP weights {self.weights.source} for {self.cfg.arch}: {exc}. "
                "Check that the file matches the architecture (model.arch)"
            ) from exc
        precision = decision or self._precision(model.eval(), device, threads)
        dtype = to_dtype(precision.precision)
        model = model.to(dtype=dtype)
        log.info("CLIP model %s on %s (%s)", self.model_id, device, precision.describe())
        return {
            "precision": precision,
            "model": model,
            "preprocess": preprocess,
            "tokenizer": open_clip.get_tokenizer(self.cfg.arch),
            "device": device,
            "dtype": dtype,
            "logit_scale": float(model.logit_scale.exp().item()),
        }

    def _precision(self, model: Any, device: str, threads: int) -> Decision:
        """model.precision when set; on a GPU bf16 where supported; on the CPU the faster
        of fp32 and bf16 measured on ``model``'s image tower (cached per host)."""
        if self.cfg.precision != "auto":
            return Decision(self.cfg.precision, "model.precision")
        if device.startswith("cuda"):
            import torch

            return Decision(cuda_precision(torch.cuda.is_bf16_supported()), "gpu")
        size = model.visual.image_size
        size = int(size[0] if isinstance(size, (tuple, list)) else size)
        key = self._host_key(device, threads)
        return decide_cpu(key, self.cache_dir, model_rate_of(model, size))

    def _host_key(self, device: str, threads: int) -> dict[str, str]:
        return host_key(
            device=device,
            threads=threads,
            model=self.model_id,
            cpuinfo=read_cpuinfo(),
            cores=available_cores(),
        )
