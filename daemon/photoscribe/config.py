"""YAML configuration → validated, typed, immutable settings (no globals).

Every key has a default, so an empty file (or none) is a valid configuration.
Unknown keys and wrong types are errors that name the key. ``config.example.yaml``
documents every key; a test keeps the two in step.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from photoscribe.errors import ConfigError
from photoscribe.formats import PHOTO_EXTENSIONS
from photoscribe.fsutil import display

ENV_CONFIG = "PHOTOSCRIBE_CONFIG"
IMAGE_EXTENSIONS = PHOTO_EXTENSIONS  # JPEG, PNG, TIFF, WebP, HEIF/AVIF and camera RAWs
CONTEXT_FIELDS = ("date", "time_of_day", "season", "camera", "place")
DEFAULT_TEMPLATES = ("a photo of {}.", "a photo of the {}.", "{}")
# NAS thumbnail and recycle folders (Synology, QNAP, Samba); hidden ones are skipped anyway.
DEFAULT_EXCLUDE = ("@eaDir", "#recycle", "#snapshot", "$RECYCLE.BIN")


def _state_dir() -> Path:
    if os.environ.get("STATE_DIRECTORY"):  # set by systemd's StateDirectory=
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "photoscribe"


def _cache_dir() -> Path:
    if os.environ.get("CACHE_DIRECTORY"):  # set by systemd's CacheDirectory=
        return Path(os.environ["CACHE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "photoscribe"


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "ViT-B-32"
    # An open_clip pretrained tag (downloaded once, needs internet) or a local weights file.
    pretrained: str = "laion2b_s34b_b79k"
    # Folder of extra open_clip model-config JSON files, for custom architectures.
    config_dir: Path | None = None
    device: str = "auto"
    # auto: the faster of fp32/bf16 measured on this CPU (vision/precision.py); GPU: bf16/fp16
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    batch_size: int = 16  # 0 = auto: from the free GPU memory on CUDA, 16 on the CPU
    gpu_decode: bool = True  # on CUDA, decode JPEGs on the GPU (nvJPEG); others on the CPU
    threads: int = 0  # torch intra-op threads on CPU; 0 = one per core (vision/threads.py)
    # CPU: keep the image tower as TorchScript in cache_dir/image-tower/ after a load, so the
    # next start loads it alone (no open_clip import, no model build; vision/quicktower.py)
    quick_start: bool = True


@dataclass(frozen=True)
class TaggingConfig:
    # A vocabulary TSV, or one label per line; default: the built-in vocabulary
    labels_file: Path | None = None
    extra_labels: tuple[str, ...] = ()
    concepts_file: Path | None = None  # the user's concepts (TSV), merged into it by id
    disable: tuple[str, ...] = ()  # concept ids never tagged
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    top_k: int = 8
    # How keywords are chosen: threshold = each concept on its own cosine similarity (the
    # multi-label rule of vision/decide.py); softmax = the old rule (a softmax over the whole
    # vocabulary cut at min_score, which tags less as the vocabulary grows); auto = softmax
    # when an old config still sets min_score, else threshold.
    rule: Literal["auto", "threshold", "softmax"] = "auto"
    min_score: float | None = None  # softmax rule only: probability cut (old default 0.05)
    threshold: float = 0.25  # cosine a concept needs when it has no threshold of its own
    thresholds_file: Path | None = None  # per-concept thresholds (photoscribe labels calibrate)
    # Scenery words close to every picture; a concept must beat the best of them by margin.
    background_prompts: tuple[str, ...] = ("a photo.", "a picture.", "an image.")
    background_margin: float = 0.0
    fallback: float = 0.05  # nothing passed: keep the best concept if this close to passing


# Field metadata: RAW = the YAML value goes to the section as it is (its __post_init__
# checks it, naming the key); DERIVED = not a key: the section sets it from another one.
RAW = {"raw": True}
DERIVED = {"key": False}


def is_key(f: dataclasses.Field) -> bool:
    """A field the YAML file may set (a derived one is not)."""
    return f.metadata.get("key", True)


@dataclass(frozen=True)
class LLMConfig:
    enabled: bool = True
    # An OpenAI-compatible server, or a list of them (captions spread over those answering).
    # Once made, base_url is the first one (for messages) and base_urls holds them all.
    base_url: str = field(default="http://127.0.0.1:8000/v1", metadata=RAW)
    model: str = "Qwen3-1.7B"
    api_key: str = field(default="", repr=False)  # literal key; prefer api_key_env
    api_key_env: str | None = None  # name of an environment variable holding the key
    api_key_file: Path | None = None  # a file holding the key (e.g. a systemd credential)
    extra_headers: dict[str, str] = field(default_factory=dict, repr=False)  # on each request
    extra_body: dict[str, Any] = field(default_factory=dict)  # merged into every request body
    timeout: float = 60.0  # seconds per request
    retries: int = 2  # extra attempts on timeouts, 429 and 5xx
    # Deprecated: the top-level `language`; when set, it must agree with it.
    language: Literal["en", "zh"] | None = None
    style: Literal["plain", "social", "alt_text"] = "plain"
    system_prompt: str | None = None  # replaces the built-in one for language + style
    user_prompt: str | None = None  # replaces the built-in one; must contain {keywords}
    thinking: bool = False
    max_tokens: int = 256
    temperature: float = 0.7
    concurrency: int = 2
    cooldown: float = 60.0  # after 3 failures in a row, seconds before asking again
    caption_wait: float = 5.0  # seconds a tagged photo waits for its caption (one write)
    # Facts from the photo's own metadata added to the prompt (privacy: none by default):
    # any of date, time_of_day, season, camera, place (a place name, never GPS coordinates).
    context: tuple[str, ...] = ()
    hemisphere: Literal["auto", "north", "south"] = "auto"  # for seasons; auto: GPS, else north
    # Every server of base_url, the first being base_url itself; not a key. A base_url that
    # is not base_urls[0] (dataclasses.replace(cfg, base_url=u)) means that server alone.
    base_urls: tuple[str, ...] = field(default=(), metadata=DERIVED)

    def __post_init__(self) -> None:
        given = self.base_url
        if isinstance(given, list | tuple):
            urls = _server_urls(given)
        else:
            url = _server_url(given, "llm.base_url")
            keep = bool(self.base_urls) and self.base_urls[0] == url
            urls = self.base_urls if keep else (url,)
        object.__setattr__(self, "base_url", urls[0])
        object.__setattr__(self, "base_urls", tuple(urls))


def _server_url(value: Any, where: str) -> str:
    """One LLM server URL (http or https), or a ConfigError naming ``where``."""
    if not isinstance(value, str):
        raise ConfigError(
            f"{where}: expected a URL such as http://127.0.0.1:8000/v1, got {value!r}"
        )
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        from photoscribe.caption.secrets import public_url  # not at import: it imports us

        raise ConfigError(
            f"{where}: {public_url(value)!r} is not an http:// or https:// URL "
            "(e.g. http://127.0.0.1:8000/v1)"
        )
    return value


def _server_urls(values: list[Any] | tuple[Any, ...]) -> tuple[str, ...]:
    """A list of LLM server URLs: at least one, each http(s), none twice."""
    if not values:
        raise ConfigError(
            "llm.base_url: the list of servers is empty; name at least one URL "
            "(or write one URL without a list)"
        )
    urls: list[str] = []
    seen: dict[str, int] = {}
    for i, value in enumerate(values):
        url = _server_url(value, f"llm.base_url[{i}]")
        same = url.rstrip("/").lower()
        if same in seen:
            from photoscribe.caption.secrets import public_url

            raise ConfigError(
                f"llm.base_url[{i}]: {public_url(url)!r} is listed twice "
                f"(llm.base_url[{seen[same]}] names it too)"
            )
        seen[same] = i
        urls.append(url)
    return tuple(urls)


@dataclass(frozen=True)
class MetadataConfig:
    write: bool = True  # false: index only, never touch the photos
    overwrite_description: bool = False  # replace a description the user wrote
    # Parent of photoscribe's keywords in the hierarchical keyword tags (lr:hierarchicalSubject
    # "AI|cat", digiKam TagsList "AI/cat"); "" = top level. Flat keyword tags get "cat".
    keyword_root: str = ""
    # embed: write into JPEG/PNG/TIFF/WebP; sidecar: always NAME.EXT.xmp beside the photo;
    # auto: embed, but a sidecar for read-only photos. RAW and HEIF/AVIF always get a sidecar.
    mode: Literal["auto", "embed", "sidecar"] = "auto"
    lightroom_sidecar: bool = False  # also NAME.xmp (Lightroom's name) when no other photo
    #                                   shares NAME
    keep_mtime: bool = False  # give a rewritten photo its old modification time

    def __post_init__(self) -> None:
        root = self.keyword_root
        parts = root.replace("/", "|").split("|")
        bad = [p for p in parts if not p.strip() or "," in p or not p.isprintable()]
        if root and bad:
            raise ConfigError(
                f"metadata.keyword_root: {root!r} must be names separated by '|' or '/', "
                'each non-empty, without commas or control characters (e.g. "AI")'
            )


@dataclass(frozen=True)
class ScanConfig:
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS
    # Glob patterns: one without "/" matches any single name in the path (file or folder);
    # one with "/" matches the whole path relative to the scanned folder.
    include: tuple[str, ...] = ()  # when set, only matching photos
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    skip_hidden: bool = True
    follow_symlinks: bool = False
    decode_workers: int = 2  # worker processes reading and decoding photos; 0 = one per core
    # Photos whose metadata is written at once, each in a worker process of its own;
    # 0 = half the decode workers, at least 2.
    write_workers: int = 0
    # Caps per photo file in its worker process: a file that needs more memory or time
    # (a decompression bomb, a hostile file) fails with the reason; the rest go on.
    file_memory_mb: int = 1024  # 0 = no cap
    file_timeout_seconds: float = 60.0


@dataclass(frozen=True)
class WatchConfig:
    """`photoscribe run`: the folders the daemon watches and how it paces itself."""

    folders: tuple[Path, ...] = ()  # watched with inotify
    poll_folders: tuple[Path, ...] = ()  # watched by polling (NFS/SMB mounts inotify can't see)
    poll_interval: float = 30.0  # seconds between polls of poll_folders
    settle_seconds: float = 2.0  # a file must stay unchanged this long before it is read
    batch_wait: float = 1.0  # wait this long for a batch to fill while photos keep arriving
    idle_unload_minutes: float = 10.0  # free the CLIP model after this long idle; 0 = never
    caption_retry_seconds: float = 60.0  # first wait before asking the LLM again (doubles)
    # A photo that failed for a passing reason (disk full, permission denied, I/O error, a
    # share gone): first wait before trying it again (doubles with each failure, max 1 h).
    failure_retry_seconds: float = 60.0
    rescan_hours: float = 24.0  # full catch-up scan this often (besides start); 0 = never
    stuck_minutes: float = 10.0  # no progress this long with work queued: stop watchdog pings


@dataclass(frozen=True)
class SearchConfig:
    limit: int = 20
    min_similarity: float = 0.2  # cosine, CLIP text→image
    translate_queries: bool = False  # the LLM turns a Chinese query into English for CLIP


@dataclass(frozen=True)
class WebConfig:
    address: str = "127.0.0.1"  # `photoscribe serve`; another address opens it (no login!)
    port: int = 8765
    allowed_hosts: tuple[str, ...] = ()  # Host names besides 127.0.0.1/localhost (rebinding)
    roots: tuple[Path, ...] = ()  # folders whose photos it shows; default: watch folders
    clip: bool = True  # CLIP text search (loads the text tower once, kept warm)


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = False  # Prometheus metrics of the daemon (`photoscribe run`)
    address: str = "127.0.0.1"  # only this machine may scrape; 0.0.0.0 opens it to the network
    port: int = 9721


@dataclass(frozen=True)
class Config:
    index_path: Path = field(default_factory=lambda: _state_dir() / "index.sqlite3")
    cache_dir: Path = field(default_factory=_cache_dir)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Captions and keywords: en, zh, or zh+en (keywords in both, caption in Chinese).
    language: Literal["en", "zh", "zh+en"] | None = None
    model: ModelConfig = ModelConfig()
    tagging: TaggingConfig = TaggingConfig()
    llm: LLMConfig = LLMConfig()
    metadata: MetadataConfig = MetadataConfig()
    scan: ScanConfig = ScanConfig()
    watch: WatchConfig = WatchConfig()
    search: SearchConfig = SearchConfig()
    metrics: MetricsConfig = MetricsConfig()
    web: WebConfig = WebConfig()

    def __post_init__(self) -> None:
        """One language setting: the top-level key, else the old llm.language (deprecated);
        llm.language ends up as the caption language (the first of ``language``)."""
        legacy, top = self.llm.language, self.language
        caption = (top or legacy or "en").split("+")[0]
        if top is not None and legacy is not None and legacy != caption:
            raise ConfigError(
                f"language is {top!r} but llm.language is {legacy!r}; remove llm.language "
                "(deprecated: the top-level `language` now sets captions and keywords)"
            )
        object.__setattr__(self, "language", top or legacy or "en")
        object.__setattr__(self, "llm", dataclasses.replace(self.llm, language=caption))
        # Not a field (so not a key, and not in a dump of the fields): only the deprecated
        # llm.language set the language. A dataclasses.replace() of the Config forgets it.
        object.__setattr__(self, "_legacy_language", top is None and legacy is not None)

    def llm_api_key(self) -> str:
        if self.llm.api_key_file:
            try:
                return self.llm.api_key_file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(
                    f"cannot read llm.api_key_file {self.llm.api_key_file}: {exc}"
                ) from exc
        if self.llm.api_key_env:
            value = os.environ.get(self.llm.api_key_env)
            if value is None:
                raise ConfigError(
                    f"llm.api_key_env names ${self.llm.api_key_env}, which is not set; "
                    "export it or remove the key"
                )
            return value
        return self.llm.api_key or "not-needed"


def default_config_path() -> Path:
    if os.environ.get(ENV_CONFIG):
        return Path(os.environ[ENV_CONFIG])
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "photoscribe" / "config.yaml"


def load_config(path: Path | None = None, *, explicit: bool = False) -> Config:
    """Read and validate ``path``; a missing default file means all defaults.

    A file named by ``explicit`` (``--config``) or by ``$PHOTOSCRIBE_CONFIG`` must exist."""
    from_env = path is None and bool(os.environ.get(ENV_CONFIG))
    path = path or default_config_path()
    if not path.exists():
        if from_env:
            raise ConfigError(
                f"${ENV_CONFIG} names the config file {path}, which does not exist; "
                f"fix the path or unset {ENV_CONFIG} to use the default"
            )
        if explicit:
            raise ConfigError(f"config file {path} does not exist")
        return Config()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config file {display(path)}: {exc}") from exc
    try:
        return config_from_dict(raw or {}, source="")
    except ConfigError as exc:  # "config file F: llm.timeout: expected float, got 'soon'"
        raise ConfigError(f"config file {display(path)}: {exc}") from None


def config_from_dict(raw: Any, *, source: str = "config") -> Config:
    return validate(_build(Config, raw, source))


def _build(cls: type, raw: Any, where: str) -> Any:
    """``where``: the section's dotted key ("" for the top level of a file)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'the file'}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if is_key(f)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where or 'top level'}: unknown key(s) {', '.join(map(str, unknown))}; "
            "see config.example.yaml"
        )
    values = {
        name: value
        if fields[name].metadata.get("raw")
        else _convert(hints[name], value, f"{where}.{name}" if where else name)
        for name, value in raw.items()
    }
    return cls(**values)


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):  # a section; one with every key commented out is null
        return _build(hint, {} if value is None else value, where)
    if origin in (typing.Union, types.UnionType):
        return _convert_optional(hint, value, where)
    if origin is Literal:
        if value not in typing.get_args(hint):
            choices = ", ".join(map(str, typing.get_args(hint)))
            raise ConfigError(f"{where}: {value!r} is not one of {choices}")
        return value
    if hint is Any:
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping")
        item = typing.get_args(hint)[1]
        return {str(k): _convert(item, v, f"{where}.{k}") for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list")
        item = typing.get_args(hint)[0]
        return tuple(_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    return _convert_scalar(hint, value, where)


def _convert_optional(hint: Any, value: Any, where: str) -> Any:
    if value is None:
        return None
    inner = [a for a in typing.get_args(hint) if a is not type(None)]
    return _convert(inner[0], value, where)


def _convert_scalar(hint: Any, value: Any, where: str) -> Any:
    if hint is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: expected a path")
        return Path(os.path.expandvars(value)).expanduser()
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if not isinstance(value, hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


USER_PROMPT_HELP = (
    "llm.user_prompt must contain {keywords} or {keywords_scored}, and may contain {context}; "
    "write other braces doubled: {{ }}"
)


def _user_prompt_ok(template: str | None) -> bool:
    if template is None:
        return True
    if "{keywords}" not in template and "{keywords_scored}" not in template:
        return False
    try:
        template.format(keywords="", keywords_scored="", context="")
    except (KeyError, IndexError, ValueError):
        return False
    return True


LANGUAGE_NOTE = (
    "llm.language is deprecated: write the top-level `language: {value}` instead (it sets "
    "the language of captions and keywords); llm.language is used meanwhile"
)


def decode_workers(config: Config) -> int:
    """scan.decode_workers, with 0 meaning one per CPU core."""
    return config.scan.decode_workers or os.cpu_count() or 1


def write_workers(config: Config) -> int:
    """scan.write_workers, with 0 meaning half the decode workers and at least 2 (one
    write is CPU for pyexiv2, then waits for fsync: a second one fills that wait)."""
    return config.scan.write_workers or max(2, decode_workers(config) // 2)


def keyword_languages(config: Config) -> tuple[str, ...]:
    """The languages photoscribe's keywords are written in ("zh+en" → ("zh", "en"))."""
    return tuple((config.language or "en").split("+"))


def language_note(config: Config) -> str | None:
    """The deprecation note for a config that sets only llm.language (None otherwise)."""
    legacy = getattr(config, "_legacy_language", False)
    return LANGUAGE_NOTE.format(value=config.language) if legacy else None


def validate(config: Config) -> Config:
    """Range checks that types alone cannot express."""
    if language_note(config):
        logging.getLogger(__name__).warning(LANGUAGE_NOTE.format(value=config.language))
    checks = [
        (config.model.batch_size >= 0, "model.batch_size must be at least 1 (or 0: auto)"),
        (config.tagging.top_k >= 1, "tagging.top_k must be at least 1"),
        (
            config.tagging.min_score is None or 0 <= config.tagging.min_score <= 1,
            "tagging.min_score must be between 0 and 1",
        ),
        (-1 <= config.tagging.threshold <= 1, "tagging.threshold is a cosine, -1 to 1"),
        (config.tagging.fallback >= 0, "tagging.fallback must not be negative"),
        (config.llm.concurrency >= 1, "llm.concurrency must be at least 1"),
        (config.llm.timeout > 0, "llm.timeout must be positive"),
        (config.llm.cooldown > 0, "llm.cooldown must be positive"),
        (config.llm.caption_wait >= 0, "llm.caption_wait must not be negative"),
        (
            set(config.llm.context) <= set(CONTEXT_FIELDS),
            f"llm.context may list only: {', '.join(CONTEXT_FIELDS)}",
        ),
        (config.llm.retries >= 0, "llm.retries must not be negative"),
        (0 <= config.metrics.port <= 65535, "metrics.port must be between 0 and 65535"),
        (0 <= config.web.port <= 65535, "web.port must be between 0 and 65535"),
        (
            config.scan.decode_workers >= 0,
            "scan.decode_workers must be at least 1 (or 0: one per core)",
        ),
        (
            config.scan.write_workers >= 0,
            "scan.write_workers must be at least 1 (or 0: auto)",
        ),
        (config.scan.file_memory_mb >= 0, "scan.file_memory_mb must not be negative"),
        (config.scan.file_timeout_seconds > 0, "scan.file_timeout_seconds must be positive"),
        (config.watch.settle_seconds >= 0, "watch.settle_seconds must not be negative"),
        (config.watch.poll_interval > 0, "watch.poll_interval must be positive"),
        (config.watch.caption_retry_seconds > 0, "watch.caption_retry_seconds must be positive"),
        (config.watch.failure_retry_seconds > 0, "watch.failure_retry_seconds must be positive"),
        (config.watch.stuck_minutes > 0, "watch.stuck_minutes must be positive"),
        (all("{}" in t for t in config.tagging.templates), "each tagging template needs {}"),
        (_user_prompt_ok(config.llm.user_prompt), USER_PROMPT_HELP),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    return config
