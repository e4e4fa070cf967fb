"""`photoscribe scan --cluster`: a real local Ray cluster (`ray start --head` on 127.0.0.1)
against a local scan of a copy of the same folder, a Ray worker killed mid-run, a rerun."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from photoscribe.cli import main
from photoscribe.cluster.items import Item
from photoscribe.cluster.stages import KnownHashes, LoadStage
from photoscribe.config import config_from_dict
from photoscribe.errors import NoIndexError
from photoscribe.records import State
from photoscribe.store import open_store

from conftest import tiny_config_dict
from fixtures import hostile
from fixtures.exiftool import differences, whole_tags
from fixtures.mountns import MountNamespace
from fixtures.synthetic import draw_shape

RAY = Path(sys.executable).parent / "ray"
SHAPES = [("red", "circle"), ("blue", "square"), ("green", "triangle"), ("yellow", "circle")]
# Differ between any two writes of the same photo (beside the file's own dates): its
# path, and the time photoscribe records in its provenance.
PER_WRITE = ("SourceFile", "XMP-photoscribe:AnnotatedAt")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_env() -> dict[str, str]:
    """Ray's token authentication, as the README's recipe sets it for `ray start` (the scans
    themselves run without RAY_AUTH_MODE: photoscribe finds the token as `ray start` does)."""
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
    }


@pytest.fixture(scope="module", autouse=True)
def ray_token(tmp_path_factory):
    """The cluster's token, made as `ray get-auth-token --generate` makes one (the README's
    first step on a head), but in a folder of the tests' own, named by RAY_AUTH_TOKEN_PATH:
    a fresh machine has no ~/.ray/auth_token, and `ray start --head` in token mode never
    makes one, so these tests must not depend on what an earlier `ray.init()` left there."""
    path = tmp_path_factory.mktemp("ray") / "auth_token"
    path.write_text(secrets.token_hex(32))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_AUTH_TOKEN_PATH", str(path))
        yield path


@contextlib.contextmanager
def ray_head(cpus: int = 2):
    """A real Ray cluster's head node, started as a user would (`ray start --head`)."""
    port = free_port()
    start = [str(RAY), "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1"]
    start += [f"--num-cpus={cpus}", "--include-dashboard=false", "--disable-usage-stats"]
    done = subprocess.run(start, env=ray_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"`ray start --head` failed:\n{done.stdout}{done.stderr}"
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop = [str(RAY), "stop", "--force"]
        subprocess.run(stop, env=ray_env(), capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def cluster(ray_token):
    with ray_head() as address:
        yield address


def library(folder: Path, count: int = 12) -> Path:
    """Real photos in four formats and two folders (Chinese names among them), beside
    hostile files: a decompression bomb, a JPEG claiming 65,000² pixels, a damaged JPEG,
    an empty file and text named as a photo."""
    (folder / "家庭 相册").mkdir(parents=True)
    formats = [(".jpg", {"quality": 90}), (".png", {}), (".tif", {}), (".webp", {"quality": 90})]
    for i in range(count):
        colour, shape = SHAPES[i % len(SHAPES)]
        ext, options = formats[i % len(formats)]
        where = folder / "家庭 相册" if i % 3 == 0 else folder
        name = f"照片_{i:02d}_{colour}{ext}" if i % 2 else f"photo_{i:02d}_{colour}{ext}"
        draw_shape(colour, shape, size=(320, 240), seed=500 + i).save(where / name, **options)
    hostile.png_bomb(folder)
    hostile.jpeg_claiming(folder)
    good = (folder / "photo_04_red.jpg").read_bytes()
    (folder / "截断.jpg").write_bytes(good[: len(good) // 3])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("not an image, only named like one")
    return folder


def jpegs(folder: Path, count: int, seed: int) -> Path:
    """``count`` small JPEGs of coloured shapes, p00.jpg … in ``folder``."""
    folder.mkdir()
    for i in range(count):
        colour, shape = SHAPES[i % len(SHAPES)]
        draw_shape(colour, shape, size=(320, 240), seed=seed + i).save(folder / f"p{i:02d}.jpg")
    return folder


class Scan:
    """The real CLI, with its own config file and index."""

    def __init__(self, home: Path, base_url: str) -> None:
        self.home = home
        self.config = home / "config.yaml"
        raw = tiny_config_dict(home, base_url)
        raw["tagging"] = {"labels_file": raw["tagging"]["labels_file"], "top_k": 3}
        self.config.write_text(yaml.safe_dump(raw, allow_unicode=True))

    def __call__(self, *args: str) -> tuple[int, str]:
        """`photoscribe scan ARGS` in a process of its own (a hang fails, after 5 min)."""
        command = [sys.executable, "-m", "photoscribe", "-c", str(self.config), "scan", *args]
        env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
        env["HF_HUB_OFFLINE"] = "1"
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        return done.returncode, done.stdout + done.stderr

    def store(self):
        return open_store(self.home / "state" / "index.sqlite3", readonly=True)


def outcome(scan: Scan, root: Path) -> dict:
    """Everything a scan leaves, with paths relative to ``root``: each index row, each
    file's tags as exiftool reads them, and the undo journal's entries per photo."""
    store = scan.store()
    rows = {}
    for row in store.rows_under(root):
        rel = row.path.relative_to(root).as_posix()
        error = (row.error or "").replace(str(root), "ROOT")
        rows[rel] = (row.state, [k.label for k in row.keywords], row.caption, error)
    journal = store.query("SELECT path, COUNT(*) FROM journal GROUP BY path")
    entries = {Path(p).relative_to(root).as_posix(): n for p, n in journal}
    tags = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rows.get(rel, (None,))[0] is State.DONE:
            found = whole_tags(path, drop=PER_WRITE)
            tags[rel] = {k: v for k, v in found.items() if not k.startswith(("System:", "File:"))}
        else:  # a file that failed: byte for byte as it was
            tags[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"rows": rows, "journal": entries, "tags": tags}


def first_line(out: str) -> str:
    return next(line for line in out.splitlines() if " photos: " in line)


def test_a_cluster_scan_equals_a_local_scan(tmp_path, cluster, fake_llm) -> None:
    local_root = library(tmp_path / "local" / "photos")
    cluster_root = tmp_path / "cluster" / "photos"
    shutil.copytree(local_root, cluster_root)
    local = Scan(tmp_path / "local", fake_llm.base_url)
    remote = Scan(tmp_path / "cluster", fake_llm.base_url)

    code_local, out_local = local(str(local_root))
    code_cluster, out_cluster = remote("--cluster", cluster, str(cluster_root))

    assert code_local == code_cluster == 1, out_local + out_cluster  # the hostile files fail
    assert first_line(out_cluster) == first_line(out_local)
    assert first_line(out_local).startswith("17 photos: 12 tagged, 0 skipped (already done), 5")
    assert "per node: " in out_cluster and "per node: " not in out_local
    want, got = outcome(local, local_root), outcome(remote, cluster_root)
    assert got["rows"] == want["rows"]
    assert got["journal"] == want["journal"]
    assert len(want["journal"]) == 12 and set(want["journal"].values()) == {1}
    changed = {k: v for k, v in got["tags"].items() if v != want["tags"][k]}
    assert {k: differences(want["tags"][k], v) for k, v in changed.items()} == {}
    assert got["tags"] == want["tags"]
    done = [r for r in want["rows"].values() if r[0] is State.DONE]
    assert len(done) == 12 and all(r[1] and r[2] for r in done)  # keywords and a caption

    code, out = remote("--cluster", cluster, str(cluster_root))  # nothing left to do
    assert code == 0  # as a local rerun: failed files are skipped until they change
    assert first_line(out).startswith("17 photos: 0 tagged, 17 skipped (already done), 0 failed")
    assert outcome(remote, cluster_root) == got


def done_so_far(index: Path) -> int:
    """Photos indexed DONE by a scan still running; 0 before it has created the index."""
    try:
        store = open_store(index, readonly=True)
    except NoIndexError:
        return 0
    try:
        return store.counts().get(State.DONE, 0)
    finally:
        store.close()


def ray_workers(stage: str) -> list[int]:
    """The pids of the Ray worker processes running ``stage``'s actors."""
    found = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [
        int(line.split()[0]) for line in found.splitlines() if stage in line and "ray::" in line
    ]


def test_a_ray_worker_killed_mid_run_loses_nothing(tmp_path, cluster, fake_llm) -> None:
    root = jpegs(tmp_path / "photos", 40, seed=900)
    fake_llm.set_behavior("slow", delay=0.2)  # writes trickle in as captions come
    scan = Scan(tmp_path, fake_llm.base_url)
    killed: list[int] = []

    def kill_when_busy() -> None:
        index = tmp_path / "state" / "index.sqlite3"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            done = done_so_far(index)
            pids = ray_workers("WriteStage")
            if 3 <= done < 30 and pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(done)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_busy)
    killer.start()
    code, out = scan("--cluster", cluster, str(root))
    killer.join()
    assert killed, "no WriteStage worker was killed while photos were in flight"
    assert code == 0, out
    assert first_line(out).startswith("40 photos: 40 tagged, 0 skipped (already done), 0 failed")
    store = scan.store()
    assert store.counts()[State.DONE] == 40
    writes = dict(store.query("SELECT path, COUNT(*) FROM journal GROUP BY path"))
    assert len(writes) == 40 and set(writes.values()) == {1}, writes  # each written once
    code, out = scan("--cluster", cluster, str(root))
    assert first_line(out).startswith("40 photos: 0 tagged, 40 skipped (already done)")


def test_a_photo_a_node_cannot_see_is_a_failure_with_its_reason(make_config, tmp_path) -> None:
    config = make_config()
    request = _request(config)
    stage = LoadStage(config, request, KnownHashes([]))
    try:
        item = stage.load(Item(tmp_path / "not-mounted-here" / "photo.jpg"))
    finally:
        stage.workers.close()
    assert item.kind == "failed"
    assert item.reason == "cannot read the file: No such file or directory"
    assert not item.transient


def test_known_hashes_find_what_the_index_holds() -> None:
    known = KnownHashes(f"jpeg:{i:064x}" for i in range(1000))
    assert len(known) == 1000
    assert all(f"jpeg:{i:064x}" in known for i in range(0, 1000, 7))
    assert not any(f"jpeg:{i:064x}" in known for i in range(1000, 1100))
    assert "png:00" not in KnownHashes([])


def test_ray_missing_is_a_clear_error(monkeypatch, make_config, tmp_path, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as on a plain install
    (tmp_path / "photos").mkdir()
    draw_shape("red", "circle", size=(64, 48), seed=1).save(tmp_path / "photos" / "a.jpg")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tmp_path)))
    code = main(["-c", str(config), "scan", "--cluster", "auto", str(tmp_path / "photos")])
    err = capsys.readouterr().err
    assert code == 2
    assert "pip install 'photoscribe[cluster]'" in err


def _request(config):
    from photoscribe.builders import build_tagger
    from photoscribe.worktasks import LoadRequest

    plan = build_tagger(config).encoder.input_plan()
    return LoadRequest(min_side=plan.min_side, plan=plan.pixels)


def test_the_config_a_node_gets_carries_the_key(tmp_path, monkeypatch) -> None:
    from photoscribe.service import cluster_config

    raw = tiny_config_dict(tmp_path)
    raw["llm"]["api_key_env"] = "PHOTOSCRIBE_TEST_KEY"
    monkeypatch.setenv("PHOTOSCRIBE_TEST_KEY", "s3cret")
    node = cluster_config(config_from_dict(raw))
    monkeypatch.delenv("PHOTOSCRIBE_TEST_KEY")  # a node without the variable
    assert node.llm_api_key() == "s3cret"


def nodes_alive(address: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", NODES, address], capture_output=True, text=True, env=ray_env()
    )
    alive = [line for line in done.stdout.splitlines() if line.startswith("ALIVE ")]
    assert alive, done.stdout + done.stderr
    return int(alive[-1].split()[1])


NODES = """
import sys, ray
ray.init(address=sys.argv[1], include_dashboard=False, log_to_driver=False)
print("ALIVE", sum(1 for n in ray.nodes() if n["Alive"]))
"""


def in_namespace(ns: MountNamespace) -> list[int]:
    """The processes in ``ns``'s mount namespace (the hidden node's raylet and workers)."""
    mine = os.readlink(f"/proc/{ns.proc.pid}/ns/mnt")
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != ns.proc.pid:
            with contextlib.suppress(OSError):
                if os.readlink(entry / "ns" / "mnt") == mine:
                    pids.append(int(entry.name))
    return pids


def hidden_node(address: str, folder: Path) -> MountNamespace:
    """A second node joining the cluster from a private mount namespace in which ``folder``
    is an empty tmpfs: a node without the photos' mount."""
    ns = MountNamespace()
    ns.mount_tmpfs(folder, "1m")
    join = [str(RAY), "start", f"--address={address}", "--num-cpus=2"]
    join += ["--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    done = subprocess.run(ns.command(*join), capture_output=True, text=True, env=ray_env())
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 60
    while nodes_alive(address) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    return ns


def stop_node(ns: MountNamespace, address: str) -> None:
    """Kill the hidden node's processes (not `ray stop`: that stops every Ray node here,
    the head too) and wait until the head counts it gone."""
    for pid in in_namespace(ns):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    ns.close()
    deadline = time.monotonic() + 90
    while nodes_alive(address) > 1 and time.monotonic() < deadline:
        time.sleep(0.5)


def test_a_node_that_cannot_see_the_folder_fails_its_photos_for_the_next_scan(
    tmp_path, cluster, fake_llm
) -> None:
    root = jpegs(tmp_path / "photos", 24, seed=300)
    scan = Scan(tmp_path, fake_llm.base_url)
    ns = hidden_node(cluster, root)
    try:
        code, out = scan("--cluster", cluster, str(root))
    finally:
        stop_node(ns, cluster)
    assert code == 1, out  # some photos failed: the scan itself went on to the end
    rows = scan.store().rows_under(root)
    failed = [r for r in rows if r.state is State.FAILED]
    done_rows = [r for r in rows if r.state is State.DONE]
    # Which node gets which batch is Ray's choice (actors on both, SPREAD): the blind one
    # got some (16 of 24 in one run here, all 24 in another), the other any number.
    assert failed, out
    assert len(failed) + len(done_rows) == 24, [(r.state, r.error) for r in rows]
    for row in failed:
        assert row.error.startswith("the cluster node "), row.error
        assert row.error.endswith(
            "cannot see this file (mount its folder at the same path on every node)"
        )
        assert row.transient
    assert f"{len(failed)} failed for a passing reason" in out

    assert nodes_alive(cluster) == 1
    code, out = scan("--cluster", cluster, str(root))  # the hidden node is gone
    assert code == 0, out
    tagged = f"{len(failed)} tagged, {len(done_rows)} skipped (already done), 0 failed"
    assert tagged in first_line(out)


def test_no_caption_asks_no_llm_from_the_cluster(tmp_path, cluster, fake_llm) -> None:
    root = jpegs(tmp_path / "photos", 4, seed=700)
    scan = Scan(tmp_path, fake_llm.base_url)
    code, out = scan("--cluster", cluster, "--no-caption", str(root))
    assert code == 0, out
    assert first_line(out).startswith("4 photos: 4 tagged, 0 skipped (already done), 0 failed")
    assert [r for r in fake_llm.requests if "messages" in r] == []
    assert all(r.caption is None for r in scan.store().rows_under(root))


def test_a_driver_killed_mid_run_loses_nothing_and_a_rerun_finishes(
    tmp_path, cluster, fake_llm
) -> None:
    root = jpegs(tmp_path / "photos", 40, seed=1100)
    fake_llm.set_behavior("slow", delay=0.2)
    scan = Scan(tmp_path, fake_llm.base_url)
    command = [sys.executable, "-m", "photoscribe", "-c", str(scan.config), "scan"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    driver = subprocess.Popen(
        [*command, "--cluster", cluster, str(root)],
        env={**env, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    index = tmp_path / "state" / "index.sqlite3"
    deadline, indexed = time.monotonic() + 120, 0
    while time.monotonic() < deadline and driver.poll() is None:
        indexed = done_so_far(index)
        if indexed >= 3:
            driver.kill()  # SIGKILL: nothing of the driver's own clean-up runs
            break
        time.sleep(0.05)
    driver.wait()
    assert 3 <= indexed < 40, f"the driver was not killed mid-run ({indexed} indexed)"

    code, out = scan("--cluster", cluster, str(root))
    assert code == 0, out
    line = first_line(out)
    found = re.match(r"40 photos: (\d+) tagged, (\d+) skipped \(already done\), 0 failed", line)
    assert found, line
    tagged, skipped = int(found[1]), int(found[2])  # skipped: indexed, or adopted from the file
    assert tagged + skipped == 40 and skipped >= indexed, line
    store = scan.store()
    assert store.counts()[State.DONE] == 40
    writes = dict(store.query("SELECT path, COUNT(*) FROM journal GROUP BY path"))
    assert len(writes) == 40 and set(writes.values()) == {1}, writes  # each written once
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temp file left
