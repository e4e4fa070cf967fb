"""A 200,000-photo tree: start-up time and peak memory of the daemon's catch-up scan.

Builds a tree of small photos (hard links to one small JPEG: cheap in space and time)
and an index that already holds every one of them as done (rows inserted in bulk with
the columns ``PhotoStore.save_tagged`` writes), then measures, each in a fresh process
so that its peak RSS is its own:

- walk: the first scan's walk (``scanner.find_photos``: the sorted list `scan` needs);
- floor: ``os.walk`` plus one ``stat`` per file — what any catch-up must do at least;
- catch-up: ``catchup.catch_up`` over the unchanged tree (nothing to queue, nothing gone);
- catch-up before: the catch-up of commit BEFORE (whole tree and all rows in memory),
  where git can show it.

    .venv/bin/python bench/bench_big_tree.py [--files 200000] [--repeats 3] [--keep DIR]

Prints one table naming the CPU; each figure is the median of the repeats; times also as
ratios to the floor measured in the same run; memory as peak RSS and as growth over the
process's RSS after imports.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_name

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "daemon"))
BEFORE = "37a4c5f"  # the catch-up that held the tree and the rows in lists
MODEL = "bench:model"
PER_FOLDER = 1000


def build_tree(root: Path, files: int) -> None:
    """``files`` hard links to one JPEG, 1,000 per folder, two folder levels."""
    from PIL import Image

    root.mkdir(parents=True)
    first = root / ".source-000.jpg"  # hidden: not a photo of the tree
    Image.new("RGB", (8, 8), (200, 40, 40)).save(first, quality=80)
    per_top = PER_FOLDER * 20  # ext4 allows 65,000 links to one file: a copy per top folder
    for i in range(files):
        top = i // per_top
        folder = root / f"{top:03d}" / f"{(i // PER_FOLDER) % 20:02d}"
        source = root / f".source-{top:03d}.jpg"
        if i % per_top == 0 and top:
            shutil.copy2(first, source)  # the same size and mtime
        if i % PER_FOLDER == 0:
            folder.mkdir(parents=True, exist_ok=True)
        os.link(source, folder / f"IMG_{i:06d}.jpg")


def build_index(index: Path, root: Path) -> None:
    """Every photo of the tree as done by ``MODEL``, as ``save_tagged`` would leave it."""
    from photoscribe.config import ScanConfig
    from photoscribe.scanner import find_photos
    from photoscribe.store import open_store
    from photoscribe.store.paths import to_db

    paths = find_photos([root], ScanConfig())
    st = os.stat(paths[0])  # hard links: one size and mtime for all
    now = time.time()
    rows = [
        (to_db(p), st.st_size, st.st_mtime_ns, f"jpeg:{i:064x}", "done", MODEL, "[]", "",
         "a caption", now, now)
        for i, p in enumerate(paths)
    ]  # fmt: skip
    store = open_store(index)
    try:
        with store.transaction() as c:
            c.executemany(
                """INSERT INTO photos (path, size, mtime_ns, content_hash, state, model,
                       keywords, keywords_text, caption, embedding, error, attempts,
                       created_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, 0, ?, ?)""",
                rows,
            )
    finally:
        store.close()


# -- one measurement, in a child process ---------------------------------------------
def child(kind: str, root: Path, index: Path) -> dict:
    from photoscribe import catchup
    from photoscribe.config import ScanConfig
    from photoscribe.scanner import find_photos
    from photoscribe.store import open_store

    before_mod = _old_catchup() if kind == "catch-up before" else None
    store = open_store(index)
    base = _rss_mib()
    started = time.perf_counter()
    queued = gone = 0
    if kind == "walk":
        queued = len(find_photos([root], ScanConfig()))
    elif kind == "floor":
        for folder, _dirs, names in os.walk(root):
            for name in names:
                if not name.startswith("."):
                    os.stat(os.path.join(folder, name))
                    queued += 1
    elif kind == "catch-up":
        found = catchup.catch_up([root], store, ScanConfig(), MODEL, _drop, _drop)
        queued, gone = found.todo, found.gone
    else:
        todo, went = before_mod.changes([root], store, ScanConfig(), MODEL)
        queued, gone = len(todo), len(went)
    seconds = time.perf_counter() - started
    store.close()
    return {"s": seconds, "peak": _peak_mib(), "base": base, "n": queued, "gone": gone}


def _drop(items: list) -> None:
    pass


def _old_catchup():
    import types

    text = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{BEFORE}:daemon/photoscribe/catchup.py"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    module = types.ModuleType("catchup_before")
    exec(compile(text, "catchup_before.py", "exec"), module.__dict__)
    return module


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mib() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited across exec from
    the parent that built the tree)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(kind: str, root: Path, index: Path) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(root), str(index)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def _old_available() -> bool:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "cat-file", "-e", f"{BEFORE}:daemon/photoscribe/catchup.py"],
        capture_output=True,
    )
    return done.returncode == 0


# -- the table ------------------------------------------------------------------------


def run(files: int, repeats: int, keep: Path | None) -> None:
    work = keep or Path(tempfile.mkdtemp(prefix="photoscribe-bigtree-"))
    root, index = work / "tree", work / "index.sqlite3"
    try:
        if not root.exists():
            t = time.perf_counter()
            build_tree(root, files)
            build_index(index, root)
            print(f"built {files} photos and their index in {time.perf_counter() - t:.0f} s")
        kinds = ["floor", "walk", "catch-up"] + (["catch-up before"] if _old_available() else [])
        results: dict[str, list[dict]] = {k: [] for k in kinds}
        for _ in range(repeats):
            for kind in kinds:
                results[kind].append(measure(kind, root, index))
        print_table(files, repeats, results)
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)


def print_table(files: int, repeats: int, results: dict[str, list[dict]]) -> None:
    def med(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in results[kind])

    floor = med("floor", "s")
    print(
        f"\nphotoscribe big-tree benchmark · {cpu_name()} · {os.cpu_count()} cores · "
        f"{files} photos · median of {repeats}\n"
    )
    print(f"{'step':<17}{'seconds':>9}{'× floor':>9}{'peak RSS MiB':>14}{'growth MiB':>12}"
          f"{'found':>9}")  # fmt: skip
    for kind, rows in results.items():
        growth = statistics.median(r["peak"] - r["base"] for r in rows)
        print(
            f"{kind:<17}{med(kind, 's'):>9.2f}{med(kind, 's') / floor:>9.2f}"
            f"{med(kind, 'peak'):>14.0f}{growth:>12.0f}{int(med(kind, 'n')):>9}"
        )
    print("\nfound: photos walked (floor, walk) or queued (catch-up: 0 for an unchanged tree)")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="build (or reuse) the tree here")
    args = parser.parse_args()
    run(args.files, args.repeats, args.keep)


if __name__ == "__main__":
    main()
