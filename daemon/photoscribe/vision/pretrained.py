"""open_clip's table of pretrained tags, read without importing open_clip (or torch).

`photoscribe doctor` must decide exactly as a scan does whether the configured weights can
be had, and answer in about a second; importing open_clip takes seconds (it imports torch).
So its ``pretrained.py`` is parsed (never run) for the table. When the file is not laid out
as expected (another open_clip version), the real open_clip is asked instead: slower, never
wrong.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import json
from pathlib import Path
from typing import Any

Lookup = tuple[dict[str, Any], list[str]]  # (the tag's config or {}, the arch's known tags)


class _Unparsable(Exception):
    pass


def open_clip_lookup(arch: str, tag: str) -> Lookup:
    """The tag's pretrained config and the arch's known tags, from open_clip itself."""
    import open_clip

    return open_clip.get_pretrained_cfg(arch, tag), open_clip.list_pretrained_tags_by_model(arch)


def lookup_without_torch(arch: str, tag: str) -> Lookup:
    """As ``open_clip_lookup``, from the parsed source when possible."""
    table = _table()
    if table is None:
        return open_clip_lookup(arch, tag)
    tags = table.get(arch, {})
    return tags.get(tag.lower().replace("-", "_"), {}), list(tags)


def arch_known(arch: str, config_dir: Path | None) -> bool:
    """Whether open_clip knows ``arch`` (its model_configs, or ``config_dir`` as
    model.config_dir adds it), read as open_clip reads them, without importing it."""
    folders = [_package_dir() / "model_configs"] if _package_dir() else []
    if config_dir is not None and config_dir.is_file():
        files = [config_dir] if config_dir.stem == arch and config_dir.suffix == ".json" else []
    else:
        files = []
        folders += [config_dir] if config_dir is not None else []
    files += [folder / f"{arch}.json" for folder in folders]
    return any(_is_model_config(f) for f in files)


def _is_model_config(path: Path) -> bool:
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and all(k in cfg for k in ("embed_dim", "vision_cfg", "text_cfg"))


def _package_dir() -> Path | None:
    spec = importlib.util.find_spec("open_clip")  # finds the package without running it
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def _table() -> dict[str, dict[str, dict[str, Any]]] | None:
    package = _package_dir()
    if package is None:
        return None
    try:
        return parse_table((package / "pretrained.py").read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, _Unparsable):
        return None


def parse_table(source: str) -> dict[str, dict[str, dict[str, Any]]]:
    """``_PRETRAINED`` of open_clip's pretrained.py, with its ``-quickgelu`` variants."""
    assigns = {
        node.targets[0].id: node.value
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
    }
    if "_PRETRAINED" not in assigns:
        raise _Unparsable("no _PRETRAINED table")
    table = _eval(assigns["_PRETRAINED"], assigns)
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise _Unparsable("_PRETRAINED is not a table of tables")
    quick = {
        f"{arch}-quickgelu": {t: c for t, c in tags.items() if c.get("quick_gelu")}
        for arch, tags in table.items()
    }
    return {**table, **{arch: tags for arch, tags in quick.items() if tags}}


def _eval(node: ast.expr, assigns: dict[str, ast.expr]) -> Any:
    """Constants, names bound at module level, dict literals, dict(...) and the _pcfg-like
    helpers (which only need their keyword arguments: hf_hub, url, quick_gelu)."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id in assigns:
        return _eval(assigns[node.id], assigns)
    if isinstance(node, ast.Dict):
        out: dict[Any, Any] = {}
        for key, value in zip(node.keys, node.values, strict=True):
            if key is None:
                out.update(_eval(value, assigns))
            else:
                out[_eval(key, assigns)] = _eval(value, assigns)
        return out
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return _call(node, assigns)
    raise _Unparsable(ast.dump(node)[:80])


def _call(node: ast.Call, assigns: dict[str, ast.expr]) -> dict[str, Any]:
    name = node.func.id  # type: ignore[attr-defined]
    if name != "dict" and not (name.startswith("_") and name.endswith("cfg")):
        raise _Unparsable(f"call of {name}")
    out: dict[str, Any] = {}
    if name != "dict":
        positional = ("url", "hf_hub")
        if len(node.args) > len(positional):
            raise _Unparsable(f"{name} with {len(node.args)} arguments")
        out = {"url": "", "hf_hub": ""}
        out.update({k: _eval(a, assigns) for k, a in zip(positional, node.args, strict=False)})
    for kw in node.keywords:
        if kw.arg is None:
            out.update(_eval(kw.value, assigns))
        elif name == "dict" or kw.arg in ("url", "hf_hub", "quick_gelu"):
            out[kw.arg] = _eval(kw.value, assigns)
    return out
