"""Helper tools for writing daemon/photoscribe/data/vocabulary.tsv (not shipped code).

build SRC  -> appends TSV lines converted from a compact chunk source to the vocabulary
check      -> validates the vocabulary and prints counts per category + labels.txt mapping

Chunk source lines: `id | en | zh | prompts | aliases.en | aliases.zh | extra`
(id empty = derived from en, prompts empty = en; extra: p=a;b g=group f=flags t=0.2).
`@p a;b` sets default parents for following lines, `# ...` is copied as a comment.
"""

from __future__ import annotations

import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VOCAB = ROOT / "daemon/photoscribe/data/vocabulary.tsv"
LABELS = ROOT / "daemon/photoscribe/data/labels.txt"
COLUMNS = ["id", "parents", "prompts", "name.en", "name.zh", "aliases.en", "aliases.zh",
           "threshold", "group", "flags"]


def _id_of(en: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", en.lower()).strip("_")


def build(src: Path) -> None:
    out: list[str] = []
    parents = ""
    for raw in src.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            out.append(line)
            continue
        if line.startswith("@after "):
            out.append(line)
            continue
        if line.startswith("@p"):
            parents = line[2:].strip()
            continue
        f = [x.strip() for x in line.split("|")]
        f += [""] * (7 - len(f))
        cid, en, zh, prompts, al_en, al_zh, extra = f[:7]
        cid = cid or _id_of(en)
        prompts = prompts or en
        row = dict.fromkeys(COLUMNS, "")
        row.update({"id": cid, "parents": parents, "prompts": prompts, "name.en": en,
                    "name.zh": zh, "aliases.en": al_en, "aliases.zh": al_zh})
        for tok in extra.split():
            k, _, v = tok.partition("=")
            key = {"p": "parents", "g": "group", "f": "flags", "t": "threshold"}[k]
            row[key] = v
        if "parent_only" in row["flags"] and prompts == en and "pr!" not in extra:
            pass
        out.append("\t".join(row[c] for c in COLUMNS))
    if any(x.startswith("@after ") for x in out):
        _insert_blocks(out)
        return
    if not VOCAB.exists():
        VOCAB.write_text(
            "# photoscribe vocabulary: concepts people search photos for (format: see README)\n"
            + "\t".join(COLUMNS) + "\n", encoding="utf-8")
    with VOCAB.open("a", encoding="utf-8") as fh:
        fh.write("\n".join(out) + "\n")


def _insert_blocks(out: list[str]) -> None:
    """`@after ID` blocks: insert the following rows after concept ID's row."""
    lines = VOCAB.read_text(encoding="utf-8").rstrip("\n").split("\n")
    target = None
    blocks: list[tuple[str, list[str]]] = []
    for row in out:
        if row.startswith("@after "):
            target = row.split()[1]
            blocks.append((target, []))
        elif target is None:
            sys.exit("rows before the first @after")
        elif not row.startswith("#") and not row.split("\t")[1]:
            sys.exit(f"@after block row without parents: {row.split(chr(9))[0]}")
        else:
            blocks[-1][1].append(row)
    for target, rows in blocks:
        idx = next((i for i, x in enumerate(lines) if x.split("\t")[0] == target), None)
        if idx is None:
            sys.exit(f"@after {target}: no such concept")
        lines[idx + 1 : idx + 1] = rows
    VOCAB.write_text("\n".join(lines) + "\n", encoding="utf-8")


def load() -> tuple[list[dict[str, str]], list[tuple[str, int]]]:
    rows: list[dict[str, str]] = []
    headers: list[tuple[str, int]] = []
    header = None
    for n, raw in enumerate(VOCAB.read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip():
            continue
        if raw.startswith("#"):
            headers.append((raw.lstrip("# ").strip(), len(rows)))
            continue
        cells = raw.split("\t")
        if header is None:
            header = cells
            continue
        if len(cells) != len(header):
            sys.exit(f"line {n}: {len(cells)} cells, header has {len(header)}")
        row = dict(zip(header, cells))
        row["_line"] = str(n)
        rows.append(row)
    return rows, headers


def check() -> int:
    rows, headers = load()
    errors: list[str] = []
    by_id: dict[str, dict[str, str]] = {}
    for r in rows:
        cid = r["id"]
        if not re.fullmatch(r"[a-z0-9_]+", cid):
            errors.append(f"line {r['_line']}: bad id {cid!r}")
        if cid in by_id:
            errors.append(f"line {r['_line']}: duplicate id {cid}")
        by_id[cid] = r
        for lang in ("en", "zh"):
            if not r[f"name.{lang}"]:
                errors.append(f"{cid}: no name.{lang}")
        flags = set(filter(None, r["flags"].split(";")))
        if flags - {"parent_only", "homonym"}:
            errors.append(f"{cid}: unknown flags {flags}")
        if not r["prompts"] and "parent_only" not in flags:
            errors.append(f"{cid}: no prompts")
        for col in ("prompts", "name.en", "name.zh", "aliases.en", "aliases.zh"):
            for item in r[col].split(";") if col.startswith(("prompts", "aliases")) else [r[col]]:
                if re.search(r"[,;|\t\n]", item):
                    errors.append(f"{cid}: forbidden character in {col}: {item!r}")
                if col != "prompts" and item != item.strip():
                    errors.append(f"{cid}: stray space in {col}: {item!r}")
                if col.startswith("aliases") and r[col] and not item:
                    errors.append(f"{cid}: empty alias in {col}")
        if r["threshold"]:
            float(r["threshold"])
        if re.search(r"[\u3400-\u4dbf\u4e00-\u9fff]", r["name.en"] + r["aliases.en"] + r["prompts"]):
            errors.append(f"{cid}: Chinese in an English column")
        if not re.search(r"[\u3400-\u4dbf\u4e00-\u9fff]", r["name.zh"]):
            errors.append(f"{cid}: name.zh has no Chinese: {r['name.zh']!r}")
    for r in rows:
        for p in filter(None, r["parents"].split(";")):
            if p not in by_id:
                errors.append(f"{r['id']}: unknown parent {p}")
    # cycles
    state: dict[str, int] = {}

    def visit(cid: str, chain: list[str]) -> None:
        if state.get(cid) == 2:
            return
        if state.get(cid) == 1:
            errors.append("cycle: " + " -> ".join(chain + [cid]))
            return
        state[cid] = 1
        for p in filter(None, by_id[cid]["parents"].split(";")):
            if p in by_id:
                visit(p, chain + [cid])
        state[cid] = 2

    for cid in by_id:
        visit(cid, [])
    # duplicate display names per language
    for lang in ("en", "zh"):
        seen: dict[str, list[str]] = defaultdict(list)
        for r in rows:
            seen[r[f"name.{lang}"].casefold()].append(r["id"])
        for name, ids in seen.items():
            if len(ids) > 1 and not all("homonym" in by_id[i]["flags"] for i in ids):
                errors.append(f"duplicate name.{lang} {name!r}: {ids}")
    # aliases colliding with another concept's display name (warning only)
    warnings: list[str] = []
    for lang in ("en", "zh"):
        names = {r[f"name.{lang}"].casefold(): r["id"] for r in rows}
        for r in rows:
            for a in filter(None, r[f"aliases.{lang}"].split(";")):
                other = names.get(a.casefold())
                if other and other != r["id"]:
                    warnings.append(f"alias.{lang} {a!r} of {r['id']} is the name of {other}")

    for lang in ("en", "zh"):
        owners: dict[str, list[str]] = defaultdict(list)
        for r in rows:
            for a in set(filter(None, r[f"aliases.{lang}"].split(";"))):
                owners[a.casefold()].append(r["id"])
        for a, ids in owners.items():
            if len(ids) > 1:
                warnings.append(f"alias.{lang} {a!r} shared by {ids}")

    def root(cid: str) -> str:
        seen_ids = set()
        while by_id[cid]["parents"] and cid not in seen_ids:
            seen_ids.add(cid)
            cid = by_id[cid]["parents"].split(";")[0]
        return cid

    print(f"concepts: {len(rows)}  taggable: {sum('parent_only' not in r['flags'] for r in rows)}")
    print("per top-level category (first-parent root):")
    for k, v in sorted(Counter(root(r["id"]) for r in rows).items(), key=lambda x: -x[1]):
        print(f"  {k:14s} {v}")
    print("groups:", dict(Counter(r["group"] for r in rows if r["group"])))
    # labels.txt mapping
    index: dict[str, str] = {}
    for r in rows:
        for key in [r["id"], r["name.en"], *filter(None, r["aliases.en"].split(";"))]:
            index.setdefault(key.casefold(), r["id"])
        index.setdefault(r["id"].replace("_", " "), r["id"])
    labels = [x.strip() for x in LABELS.read_text(encoding="utf-8").splitlines()
              if x.strip() and not x.startswith("#")]
    missing = [lab for lab in labels if lab.casefold() not in index]
    print(f"labels.txt: {len(labels) - len(missing)}/{len(labels)} mapped")
    if "-m" in sys.argv:
        for lab in labels:
            print(f"  {lab} -> {index.get(lab.casefold(), 'MISSING')}")
    if missing:
        print("  unmapped:", "; ".join(missing))
    for w in warnings[:40] if "-w" in sys.argv else []:
        print("warning:", w)
    print(f"warnings: {len(warnings)}")
    for e in errors:
        print("ERROR:", e)
    print(f"errors: {len(errors)}")
    return 1 if errors else 0


if __name__ == "__main__":
    if sys.argv[1] == "build":
        for s in sys.argv[2:]:
            build(Path(s))
    elif sys.argv[1] == "check":
        sys.exit(check())


def set_field(cid: str, column: str, value: str) -> None:
    """Edit one cell of the vocabulary in place (`set ID COLUMN VALUE`)."""
    lines = VOCAB.read_text(encoding="utf-8").split("\n")
    header = next(x for x in lines if x and not x.startswith("#")).split("\t")
    col = header.index(column)
    for i, line in enumerate(lines):
        cells = line.split("\t")
        if cells[0] == cid and not line.startswith("#") and len(cells) == len(header):
            cells[col] = value
            lines[i] = "\t".join(cells)
            VOCAB.write_text("\n".join(lines), encoding="utf-8")
            return
    sys.exit(f"no concept {cid}")


if __name__ == "__main__" and sys.argv[1] == "set":
    set_field(*sys.argv[2:5])
