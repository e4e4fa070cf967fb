"""Thousands of mutated photos through photoscribe's decode, metadata read and write.

The seeds in tests/data/fuzz/ (made by fixtures/fuzz_seeds.py) are mutated by
fixtures/mutate.py and pushed, in a child process (fixtures/fuzz_worker.py), through
photo_hash, decode, read_existing, read_recorded and write_annotation. A native crash
kills only the child: the test saves the mutant that did it and goes on with the next.

    PHOTOSCRIBE_FUZZ_COUNT=200000 pytest tests/test_fuzz_corpus.py   # a long run
    PHOTOSCRIBE_FUZZ_ARTIFACTS=DIR  # where crashing/failing mutants are kept (else tmp)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from photoscribe.contenthash import content_hash
from photoscribe.errors import MetadataError
from photoscribe.metadata.writer import read_existing, write_annotation
from photoscribe.records import Annotation

from fixtures.exiftool import exiftool_json
from fixtures.fuzz_worker import DESCRIPTION, KEYWORDS, exercise, make, seeds

TESTS = Path(__file__).parent
SEEDS = TESTS / "data" / "fuzz"
WORKER = TESTS / "fixtures" / "fuzz_worker.py"
DAEMON = TESTS.parent / "daemon"
COUNT = int(os.environ.get("PHOTOSCRIBE_FUZZ_COUNT", "4000"))


def run_corpus(count: int, work: Path, artifacts: Path) -> tuple[list[dict], list[str], float]:
    """Every mutant's report, one line per native crash, and the seconds it took."""
    env = {**os.environ, "PYTHONPATH": f"{DAEMON}{os.pathsep}{TESTS}", "HF_HUB_OFFLINE": "1"}
    crashes: list[str] = []
    start, began = 0, time.monotonic()
    while start < count:
        child = subprocess.run(
            [sys.executable, str(WORKER), str(SEEDS), str(start), str(count), str(work)],
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if child.returncode == 0:
            break
        last = int((work / "progress").read_text().split()[-1])
        crashes.append(save_crasher(last, child, artifacts))
        start = last + 1
    reports = [json.loads(line) for line in (work / "report.jsonl").read_text().splitlines()]
    return reports, crashes, time.monotonic() - began


def save_crasher(index: int, child: subprocess.CompletedProcess[str], artifacts: Path) -> str:
    seed, data, ops = make(seeds(SEEDS), index)
    artifacts.mkdir(parents=True, exist_ok=True)
    kept = artifacts / f"crash-{index}{seed.suffix}"
    kept.write_bytes(data)
    return f"mutant {index} ({seed.name} {ops}) killed the worker ({child.returncode}); " + (
        f"kept as {kept}; stderr: {child.stderr[-500:]}"
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("fuzz")
    default = work / "artifacts"
    artifacts = Path(os.environ.get("PHOTOSCRIBE_FUZZ_ARTIFACTS", default))
    reports, crashes, seconds = run_corpus(COUNT, work, artifacts)
    print(f"\nfuzz corpus: {len(reports)} mutants in {seconds:.1f} s")
    return work, artifacts, reports, crashes


def test_no_mutant_crashes_the_process(corpus) -> None:
    _, _, reports, crashes = corpus
    assert not crashes, "\n".join(crashes)
    assert [r["i"] for r in reports] == list(range(COUNT))


def test_every_failure_is_a_photoscribe_error_with_a_reason(corpus) -> None:
    _, artifacts, reports, _ = corpus
    found = [r for r in reports if r["unexpected"]]
    for report in found[:20]:
        seed, data, _ = make(seeds(SEEDS), report["i"])
        artifacts.mkdir(parents=True, exist_ok=True)
        (artifacts / f"unexpected-{report['i']}{seed.suffix}").write_bytes(data)
    summary = [f"{r['i']} {r['seed']} {r['ops']}: {r['unexpected'][0]}" for r in found[:5]]
    assert not found, f"{len(found)} mutants, kept in {artifacts}:\n" + "\n".join(summary)
    for report in reports:
        for stage, outcome in report["stages"].items():
            assert outcome == "ok" or outcome.startswith("refused: "), (stage, report)
            assert "Traceback" not in outcome, report


def test_the_corpus_reaches_every_stage_both_ways(corpus) -> None:
    """Not vacuous: mutants are refused and accepted at each stage, for each seed."""
    _, _, reports, _ = corpus
    outcomes = {(stage, o == "ok") for r in reports for stage, o in r["stages"].items()}
    for stage in ("hash", "decode", "read", "write"):
        assert {(stage, True), (stage, False)} <= outcomes, stage
    written = {r["seed"] for r in reports if r["stages"].get("write") == "ok"}
    assert {"seed.jpg", "seed.png", "seed.tif", "seed.webp"} <= written


def test_what_was_written_reads_back_in_exiftool(corpus) -> None:
    work, _, reports, _ = corpus
    written = sorted((work / "written").iterdir())
    expected = {f"m{r['i']}": r.get("description") for r in reports if r.get("written")}
    assert written and len(written) == sum(r.get("written", False) for r in reports)
    for chunk in range(0, len(written), 500):
        for tags in exiftool_json("-XMP-dc:Subject", "-XMP-dc:Description", *written[chunk:][:500]):
            subjects = tags.get("Subject", [])
            subjects = subjects if isinstance(subjects, list) else [subjects]
            assert set(KEYWORDS) <= set(map(str, subjects)), tags
            wanted = expected[Path(tags["SourceFile"]).stem]
            if wanted == DESCRIPTION:
                assert tags.get("Description") == DESCRIPTION, tags
            else:  # the user's own description (maybe only in IPTC/EXIF) stays as it was
                assert tags.get("Description") in (None, wanted), tags


REGRESSIONS = SEEDS / "regressions"  # mutants that once broke a promise (not seeds)


POISON = REGRESSIONS / "bogus-dc-namespace.png"  # sound, but its XMP declares a bogus dc URI


@pytest.mark.parametrize("name", sorted(p.name for p in REGRESSIONS.iterdir() if p != POISON))
def test_regression_mutants_are_refused_with_a_reason(tmp_path: Path, name: str) -> None:
    """tiff-no-width: PIL's TypeError in the hash; overflow: pyexiv2's OverflowError;
    xp-list: pyexiv2's AttributeError on an XP tag with many values (after the write);
    heif-limit: libheif's RuntimeError in decode; png-without-ihdr: exiv2 "wrote" nothing;
    two-xmp-packets, garbled-xmp-signature: exiftool would read the stale packet;
    stale-exiv2-error: see below."""
    path = REGRESSIONS / name
    report = exercise(0, path, path.read_bytes(), [], tmp_path)
    assert report["unexpected"] == [], report["unexpected"][0]["what"]
    assert any(o.startswith("refused: ") for o in report["stages"].values()), report


def test_exiv2s_error_for_one_photo_does_not_fail_the_next(tmp_path: Path) -> None:
    """pyexiv2 keeps the errors exiv2 logs in one buffer for the process and raises them
    from the next call: a damaged photo's reason used to fail the sound photo after it."""
    damaged = (REGRESSIONS / "stale-exiv2-error.jpg").read_bytes()
    with pytest.raises(MetadataError, match="EXIF block is damaged") as caught:
        read_existing(damaged)
    assert "400 entries considered invalid" in str(caught.value)  # the logged cause too
    assert read_existing((SEEDS / "seed.tif").read_bytes()).keywords == ("seed",)


def test_a_bogus_namespace_in_one_photo_does_not_misplace_the_next_ones_keywords(
    tmp_path: Path,
) -> None:
    """exiv2 registers each namespace it parses for the whole process: after reading a
    packet with xmlns:dc="http://purl.org/dc/ele3ents/1.1/", every write put dc:subject
    into that namespace, where no other program finds the keywords."""
    read_existing(POISON.read_bytes())
    photo = tmp_path / "good.jpg"
    photo.write_bytes((SEEDS / "seed.jpg").read_bytes())
    digest = content_hash(photo.read_bytes())
    note = Annotation(("猫", "cat"), None, model="m", content_hash=digest)
    assert write_annotation(photo, note, expected_hash=digest).changed
    tags = exiftool_json("-G1", "-XMP-dc:Subject", photo)[0]
    assert tags["XMP-dc:Subject"] == ["seed", "种子", "猫", "cat"], tags
