"""The writer writes several photos at once, but never two jobs of one photo (or of two
photos that may share a sidecar) at once, and those in the order they were put.

Real JPEGs, the real metadata write (pyexiv2) read back by exiftool, a real SQLite index;
the write function is the real one wrapped to record when each write starts and ends."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

from photoscribe.contenthash import photo_hash
from photoscribe.metadata import write_photo
from photoscribe.records import Keyword, State, Tagging
from photoscribe.store import open_store
from photoscribe.writing import LateCaptionJob, TaggedJob, Writer, file_key

from fixtures.exiftool import whole_tags
from fixtures.synthetic import draw_shape


class Recorded:
    """The real write_photo, recording (path, start, end) and holding each write open
    for ``hold`` seconds so that overlapping writes show."""

    def __init__(self, hold: float = 0.15) -> None:
        self.hold = hold
        self.spans: list[tuple[Path, float, float]] = []
        self.inside = 0
        self.most_inside = 0
        self._lock = threading.Lock()

    def __call__(self, path: Path, annotation, **options):
        with self._lock:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
        started = time.monotonic()
        try:
            time.sleep(self.hold)
            return write_photo(path, annotation, **options)
        finally:
            with self._lock:
                self.inside -= 1
                self.spans.append((path, started, time.monotonic()))


def photos(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, name in enumerate(names):
        path = folder / name
        draw_shape("red", "circle", seed=i).save(path, "JPEG", quality=90)
        out.append(path)
    return out


def tagging(*labels: str) -> Tagging:
    return Tagging(tuple(Keyword(x, 0.5) for x in labels), b"\x00<" * 256, "model-a")


def job(path: Path, *labels: str, caption: str | None = None) -> TaggedJob:
    return TaggedJob(path, photo_hash(path, path.read_bytes()), tagging(*labels), caption)


def run_writer(tmp_path: Path, jobs, threads: int, write) -> tuple[list, object]:
    store = open_store(tmp_path / "index.sqlite3")
    reports: list[tuple[Path, str, str | None]] = []
    writer = Writer(store, write, lambda p, o, r, **kw: reports.append((p, o, r)), threads=threads)
    for j in jobs:
        writer.put(j)
    writer.close()
    return reports, store


def overlapping(spans, a: Path, b: Path) -> bool:
    one = [(s, e) for p, s, e in spans if p == a]
    two = [(s, e) for p, s, e in spans if p == b]
    return any(s1 < e2 and s2 < e1 for s1, e1 in one for s2, e2 in two)


def test_photos_are_written_several_at_once(tmp_path: Path) -> None:
    paths = photos(tmp_path / "p", [f"{i}.jpg" for i in range(6)])
    write = Recorded()
    started = time.monotonic()
    reports, store = run_writer(tmp_path, [job(p, "cat") for p in paths], 3, write)
    took = time.monotonic() - started
    assert sorted(o for _, o, _ in reports) == ["tagged"] * 6
    assert write.most_inside == 3, write.most_inside  # three files at once
    assert took < 6 * write.hold  # not one after another (6 × 0.15 s)
    assert store.counts()[State.NEEDS_CAPTION] == 6  # keywords written, no caption asked
    for path in paths:
        assert whole_tags(path)["XMP-dc:Subject"] == ["cat"]


def test_one_thread_writes_one_photo_at_a_time(tmp_path: Path) -> None:
    paths = photos(tmp_path / "p", ["a.jpg", "b.jpg", "c.jpg"])
    write = Recorded(hold=0.05)
    run_writer(tmp_path, [job(p, "cat") for p in paths], 1, write)
    assert write.most_inside == 1


def test_jobs_of_one_photo_never_overlap_and_keep_their_order(tmp_path: Path) -> None:
    a, b, c, d = photos(tmp_path / "p", ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    write = Recorded()
    jobs = [job(a, "cat"), job(b, "dog"), job(a, "cat", "sofa"), job(c, "sea"), job(d, "sky")]
    jobs.append(job(a, "cat", "sofa", "lamp"))
    _, store = run_writer(tmp_path, jobs, 4, write)
    a_spans = sorted((s, e) for p, s, e in write.spans if p == a)
    assert len(a_spans) == 3
    assert all(e1 <= s2 for (_, e1), (s2, _) in itertools.pairwise(a_spans))  # one at a time
    assert whole_tags(a)["XMP-dc:Subject"] == ["cat", "sofa", "lamp"]  # the last put wins
    assert [k.label for k in store.by_path(a).keywords] == ["cat", "sofa", "lamp"]
    assert write.most_inside >= 3  # the other photos went on meanwhile


def test_a_late_caption_waits_for_its_keyword_write(tmp_path: Path) -> None:
    """The caption's job finds the row the keyword write makes: with the two jobs on
    different threads at once, it would find none and the caption would be lost."""
    (a,) = photos(tmp_path / "p", ["a.jpg"])
    first = job(a, "cat")
    late = LateCaptionJob(a, first.content_hash, first.tagging, "一只猫坐在沙发上")
    reports, store = run_writer(tmp_path, [first, late], 4, Recorded())
    assert [o for _, o, _ in reports] == ["tagged", "captioned"]
    assert store.by_path(a).caption == "一只猫坐在沙发上"
    assert whole_tags(a)["XMP-dc:Description"] == "一只猫坐在沙发上"


def test_photos_that_may_share_a_sidecar_are_written_one_after_another(tmp_path: Path) -> None:
    jpeg, other = photos(tmp_path / "p", ["IMG_1.jpg", "img_1.JPEG"])
    assert file_key(jpeg) == file_key(other)  # a.jpg / a.CR2 → a.xmp (Lightroom)
    write = Recorded()
    run_writer(tmp_path, [job(jpeg, "cat"), job(other, "dog")], 4, write)
    assert not overlapping(write.spans, jpeg, other)
