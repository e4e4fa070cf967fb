"""A photo's date taken, camera and place come from the metadata write itself: the
writer does not read the file a second time for them (real JPEGs with real EXIF, the
real pyexiv2 write, a real SQLite index); where the write read no facts (a sidecar, or
no metadata writes) the writer reads them from the photo."""

from __future__ import annotations

from pathlib import Path

from photoscribe.config import MetadataConfig
from photoscribe.contenthash import photo_hash
from photoscribe.metadata import write_photo
from photoscribe.records import Keyword, PhotoFacts, Tagging
from photoscribe.search.facts import facts_from, read_facts
from photoscribe.store import open_store
from photoscribe.writing import TaggedJob, Writer
from test_search_facts import save_with_exif

from fixtures.exiftool import whole_tags


def photo(folder: Path, name: str, taken: str, make: str, model: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    save_with_exif(path, "red", taken, make, model)
    return path


def job(path: Path) -> TaggedJob:
    tagging = Tagging((Keyword("海滩", 0.5), Keyword("beach", 0.4)), b"\x00<" * 256, "model-a")
    return TaggedJob(path, photo_hash(path, path.read_bytes()), tagging, None)


class CountingReads:
    """read_facts, counting the photos it was asked for."""

    def __init__(self) -> None:
        self.paths: list[Path] = []

    def __call__(self, path: Path) -> PhotoFacts | None:
        self.paths.append(path)
        return read_facts(path)


def index_with(tmp_path: Path, jobs: list[TaggedJob], write, metadata: MetadataConfig):
    store = open_store(tmp_path / "index.sqlite3")
    reads = CountingReads()
    reports: list[tuple] = []
    writer = Writer(
        store,
        write,
        lambda p, o, r, **kw: reports.append((p.name, o, r)),
        metadata=metadata,
        facts=reads,
        threads=2,
    )
    for j in jobs:
        writer.put(j)
    writer.close()
    rows = {r.path.name: r for r in store.rows_under(tmp_path)}
    store.close()
    return rows, reads.paths, reports


def test_the_write_returns_the_facts_it_read(tmp_path: Path) -> None:
    path = photo(tmp_path, "照片.jpg", "2023:05:01 10:00:00", "Canon", "Canon EOS R5")
    j = job(path)
    from photoscribe.writing import annotation_of

    annotation = annotation_of(j.tagging, None, j.content_hash, None)
    outcome = write_photo(path, annotation, expected_hash=j.content_hash, facts=facts_from)
    assert outcome.changed
    assert outcome.facts == read_facts(path) == PhotoFacts("2023-05-01T10:00", "Canon EOS R5")
    assert whole_tags(path)["XMP-dc:Subject"] == ["海滩", "beach"]  # it was written
    again = write_photo(path, annotation, expected_hash=j.content_hash, facts=facts_from)
    assert not again.changed and again.facts == outcome.facts  # nothing to write: still read
    plain = write_photo(path, annotation, expected_hash=j.content_hash)
    assert plain.facts is None  # not asked for


def test_the_writer_indexes_the_writes_facts_without_reading_the_photos_again(
    tmp_path: Path,
) -> None:
    one = photo(tmp_path / "a", "一.jpg", "2023:05:01 10:00:00", "Canon", "Canon EOS R5")
    two = photo(tmp_path / "a", "two.jpg", "2024:08:02 17:30:00", "Apple", "iPhone 13")
    rows, reads, reports = index_with(tmp_path, [job(one), job(two)], write_photo, MetadataConfig())
    assert sorted(o for _, o, _ in reports) == ["tagged", "tagged"], reports
    assert reads == []
    facts = {name: (row.date_taken, row.camera) for name, row in rows.items()}
    assert facts == {
        "一.jpg": ("2023-05-01T10:00", "Canon EOS R5"),
        "two.jpg": ("2024-08-02T17:30", "Apple iPhone 13"),
    }
    assert whole_tags(two)["XMP-dc:Subject"] == ["海滩", "beach"]


def test_a_sidecar_write_or_no_write_reads_the_facts_from_the_photo(tmp_path: Path) -> None:
    side = photo(tmp_path / "s", "side.jpg", "2022:01:02 03:04:00", "Nikon", "Nikon Z 6")
    rows, reads, _ = index_with(
        tmp_path / "s", [job(side)], write_photo, MetadataConfig(mode="sidecar")
    )
    assert reads == [side]
    assert rows["side.jpg"].camera == "Nikon Z 6"
    assert whole_tags(side.with_name("side.jpg.xmp"))["XMP-dc:Subject"] == ["海滩", "beach"]
    bare = photo(tmp_path / "n", "bare.jpg", "2021:06:07 08:09:00", "Sony", "ILCE-7M3")
    before = bare.read_bytes()
    rows, reads, _ = index_with(tmp_path / "n", [job(bare)], None, MetadataConfig())
    assert reads == [bare]
    assert rows["bare.jpg"].date_taken == "2021-06-07T08:09"
    assert bare.read_bytes() == before  # no writes: the photo is untouched


def scan_counting_reads(config, folder: Path, monkeypatch) -> tuple[dict, list[Path]]:
    """A real scan (worker processes, the tiny CLIP); the paths the writer asked a
    worker to read facts for, and the index rows."""
    from photoscribe import service, writing
    from photoscribe.progress import Progress

    asked: list[Path] = []
    real = writing.IsolatedFacts.__call__

    def counting(self, path: Path):
        asked.append(path)
        return real(self, path)

    monkeypatch.setattr(writing.IsolatedFacts, "__call__", counting)
    summary = service.scan(config, [folder], progress=Progress(bar=False), captions=False)
    assert summary.tagged == 2, summary
    store = open_store(config.index_path)
    rows = {r.path.name: r for r in store.rows_under(folder)}
    store.close()
    return rows, asked


def test_a_scan_without_writes_takes_the_facts_from_the_load(
    tmp_path: Path, make_config, monkeypatch
) -> None:
    folder = tmp_path / "photos" / "只读"
    one = photo(folder, "一.jpg", "2023:05:01 10:00:00", "Canon", "Canon EOS R5")
    two = photo(folder, "two.jpg", "2024:08:02 17:30:00", "Apple", "iPhone 13")
    before = {p: p.read_bytes() for p in (one, two)}
    rows, asked = scan_counting_reads(make_config(metadata={"write": False}), folder, monkeypatch)
    assert asked == []  # one read of each file: the load's
    facts = {name: (row.date_taken, row.camera) for name, row in rows.items()}
    assert facts == {
        "一.jpg": ("2023-05-01T10:00", "Canon EOS R5"),
        "two.jpg": ("2024-08-02T17:30", "Apple iPhone 13"),
    }
    assert {p: p.read_bytes() for p in (one, two)} == before


def test_a_scan_writing_sidecars_still_reads_the_facts_from_each_photo(
    tmp_path: Path, make_config, monkeypatch
) -> None:
    folder = tmp_path / "photos"
    photo(folder, "a.jpg", "2022:01:02 03:04:00", "Nikon", "Nikon Z 6")
    photo(folder, "b.jpg", "2021:06:07 08:09:00", "Sony", "ILCE-7M3")
    config = make_config(metadata={"mode": "sidecar"})
    rows, asked = scan_counting_reads(config, folder, monkeypatch)
    assert sorted(p.name for p in asked) == ["a.jpg", "b.jpg"]
    assert rows["a.jpg"].camera == "Nikon Z 6" and rows["b.jpg"].date_taken == "2021-06-07T08:09"
