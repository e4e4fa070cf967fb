"""The `photoscribe` command line. One place maps errors to messages and exit codes."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from photoscribe import __version__
from photoscribe.config import Config, load_config
from photoscribe.errors import PhotoscribeError
from photoscribe.fsutil import display
from photoscribe.records import State, Summary

log = logging.getLogger("photoscribe")
MAX_FAILURES_SHOWN = 20
DAEMON_STALE_S = 30.0  # a running daemon publishes its state every few seconds


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="photoscribe",
        description="Describe photos with CLIP + an LLM and write the result into the photos.",
    )
    p.add_argument("--version", action="version", version=f"photoscribe {__version__}")
    p.add_argument(
        "-c",
        "--config",
        type=Path,
        help="config file (default: $PHOTOSCRIBE_CONFIG or ~/.config/photoscribe/config.yaml)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    scan = sub.add_parser("scan", help="tag, caption, write and index the photos under PATHs")
    scan.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    scan.add_argument("--force", action="store_true", help="re-tag photos already done")
    scan.add_argument("--no-caption", action="store_true", help="keywords only, no LLM calls")
    scan.add_argument(
        "--dry-run",
        action="store_true",
        help="tag and caption, show what would change in each file, write nothing",
    )
    scan.set_defaults(func=cmd_scan)

    run = sub.add_parser(
        "run", help="watch the configured folders and process photos as they arrive (daemon)"
    )
    run.set_defaults(func=cmd_run)

    search = sub.add_parser("search", help="find photos by caption, keywords and CLIP similarity")
    search.add_argument("text")
    search.add_argument("-n", "--limit", type=int, help="at most this many results")
    search.add_argument(
        "--text-only", action="store_true", help="full-text only: no CLIP model is loaded (fast)"
    )
    search.add_argument("--json", action="store_true", help="machine-readable output")
    search.set_defaults(func=cmd_search)

    status = sub.add_parser("status", help="counts by state and the last failures")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    caption = sub.add_parser(
        "caption", help="captions for photos that have keywords but no caption yet"
    )
    caption.add_argument(
        "--retry-pending",
        action="store_true",
        required=True,
        help="ask the LLM again for every photo waiting for a caption",
    )
    caption.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="only photos under these folders (default: all)",
    )
    caption.set_defaults(func=cmd_caption)

    describe = sub.add_parser(
        "describe", help="print keywords and a streamed caption for one photo (writes nothing)"
    )
    describe.add_argument("photo", type=Path)
    describe.set_defaults(func=cmd_describe)

    undo = sub.add_parser(
        "undo", help="take photoscribe's metadata out of photos and restore what it replaced"
    )
    undo.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="photos or folders")
    undo.add_argument("--all", action="store_true", help="every photo photoscribe wrote")
    undo.add_argument("--dry-run", action="store_true", help="show what would change only")
    undo.set_defaults(func=cmd_undo)

    index = sub.add_parser("index", help="maintain the index").add_subparsers(
        dest="index_command", required=True, metavar="ACTION"
    )
    rebuild = index.add_parser(
        "rebuild",
        help="rebuild the index from what photoscribe wrote into the photos (no CLIP, no LLM)",
    )
    rebuild.add_argument(
        "paths", nargs="*", type=Path, metavar="PATH", help="folders (default: watch.folders)"
    )
    rebuild.add_argument(
        "--embeddings", action="store_true", help="also compute CLIP embeddings (for search)"
    )
    rebuild.set_defaults(func=cmd_index_rebuild)

    # photoscribe labels calibrate (vision/calibrate.py)
    labels = sub.add_parser("labels", help="the keyword vocabulary").add_subparsers(
        dest="labels_command", required=True, metavar="ACTION"
    )
    calibrate = labels.add_parser(
        "calibrate",
        help="fit per-concept thresholds on photos you already keyworded",
        description="Reads the keywords you put on the photos under FOLDER (IPTC/XMP, English "
        "or Chinese names and aliases), fits each concept's threshold on those photos and "
        "writes them to a file for tagging.thresholds_file.",
    )
    calibrate.add_argument("folder", type=Path, metavar="FOLDER")
    calibrate.add_argument(
        "--output",
        type=Path,
        help="the thresholds file (default: tagging.thresholds_file, else CACHE/thresholds.tsv)",
    )
    calibrate.set_defaults(func=cmd_labels_calibrate)

    doctor = sub.add_parser("doctor", help="check the index, the CLIP weights and the LLM server")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.set_defaults(func=cmd_doctor)
    return p


def cmd_scan(config: Config, args: argparse.Namespace) -> int:
    from photoscribe.progress import Progress
    from photoscribe.service import scan

    summary = scan(
        config,
        args.paths,
        progress=Progress(),
        force=args.force,
        captions=not args.no_caption,
        dry_run=args.dry_run,
        show=show_changes,
    )
    print_summary(summary)
    if args.dry_run:
        print("dry run: nothing was written (neither photos nor the index)")
    return 1 if summary.failed else 0


def cmd_run(config: Config, args: argparse.Namespace) -> int:
    import signal

    from photoscribe.daemon import Controls
    from photoscribe.service import run_daemon

    controls = Controls()
    signal.signal(signal.SIGTERM, lambda *_: controls.request_stop())
    signal.signal(signal.SIGINT, lambda *_: controls.request_stop())
    signal.signal(signal.SIGHUP, lambda *_: controls.request_reload())

    def reload_config() -> Config:
        return load_config(args.config, explicit=args.config is not None)

    run_daemon(config, controls, reload_config)
    return 0


def print_summary(s: Summary, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    total = s.tagged + s.skipped + s.failed
    out.write(
        f"{total} photos: {s.tagged} tagged, {s.skipped} skipped (already done), "
        f"{s.failed} failed; {caption_counts(s, 'waiting for the LLM')}\n"
    )
    if s.failed:
        out.write(f"  {_failed_kinds(s.failed, s.transient)}\n")
    for path, reason in s.failures[:MAX_FAILURES_SHOWN]:
        again = " (will be tried again)" if path in s.passing else ""
        out.write(f"  failed: {display(path)}: {reason}{again}\n")
    if len(s.failures) > MAX_FAILURES_SHOWN:
        out.write(f"  … and {len(s.failures) - MAX_FAILURES_SHOWN} more (photoscribe status)\n")
    for line in caption_outlook(s, "the next `photoscribe scan`"):
        out.write(f"  {line}\n")


def caption_counts(s: Summary, waiting: str) -> str:
    if s.captions_off and not s.captioned:
        return f"captions off ({s.captions_off})"
    return f"{s.captioned} captions written, {s.waiting} {waiting}"


def caption_outlook(s: Summary, next_run: str) -> list[str]:
    """What becomes of the photos still waiting for a caption, and what to do about it."""
    if not s.waiting or s.captions_off:
        return []
    rejected = s.rejections()
    lines = []
    if rejected:
        reason, _ = rejected.most_common(1)[0]
        n = rejected.total()
        lines.append(
            f"the LLM answered, but its captions for {n} photo{'s' * (n != 1)} were rejected: "
            f"{reason}; see one reply with `photoscribe doctor`, then fix llm.model, "
            "llm.language or the prompts and run `photoscribe caption --retry-pending`"
        )
    if s.waiting > rejected.total():
        lines.append(f"captions will be added by {next_run} once the LLM answers")
    return lines


def _failed_kinds(failed: int, transient: int) -> str:
    """Which failures the next scan tries again and which wait for the file to change."""
    permanent = failed - transient
    parts = []
    if transient:
        parts.append(
            f"{transient} failed for a passing reason (disk full, permission, I/O, a share "
            "gone) and will be tried again by the next scan"
        )
    if permanent:
        parts.append(f"{permanent} will be tried again only when the file changes")
    return "; ".join(parts)


def cmd_search(config: Config, args: argparse.Namespace) -> int:
    from photoscribe.service import run_search

    limit = args.limit or config.search.limit
    hits = run_search(config, args.text, limit=limit, use_clip=not args.text_only)
    if args.json:
        json.dump([h.as_json() for h in hits], sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return 0
    for hit in hits:
        keywords = ", ".join(hit.keywords)
        print(f"{display(hit.path)}\n    {hit.caption or '(no caption yet)'}\n    [{keywords}]")
    if not hits:
        print("no matches", file=sys.stderr)
    return 0


def cmd_status(config: Config, args: argparse.Namespace) -> int:
    from photoscribe.store import open_store
    from photoscribe.store.photos import PERMANENT, TRANSIENT
    from photoscribe.store.queue import queue_depth

    store = open_store(config.index_path, readonly=True)
    counts = store.counts()
    failures = store.last_failures(10)
    problems = caption_problems(store)
    daemon = daemon_status(store)
    if args.json:
        json.dump(
            {
                "index": str(config.index_path),
                "counts": {s.value: n for s, n in counts.items()},
                "queued": queue_depth(store),
                "daemon": daemon,
                "failures": store.failure_counts(),
                "last_failures": [
                    {"path": display(r.path), "reason": r.error, "kind": r.failure}
                    for r in failures
                ],
                "caption_problems": [{"reason": r, "photos": n} for r, n in problems],
            },
            sys.stdout,
            ensure_ascii=False,
            indent=2,
        )
        sys.stdout.write("\n")
        return 0
    print(f"index: {config.index_path}")
    print(f"  done (keywords + caption): {counts[State.DONE]}")
    print(f"  keywords, waiting for a caption: {counts[State.NEEDS_CAPTION]}")
    for reason, photos in problems:
        kind, sep, why = reason.partition(": ")
        kind = kind.removeprefix("caption ")
        print(f"    {photos} {kind}: {why}" if sep else f"    {photos}: {reason}")
    kinds = store.failure_counts()
    print(
        f"  failed: {counts[State.FAILED]} ({kinds[TRANSIENT]} to be tried again: disk, "
        f"permission or I/O problems; {kinds[PERMANENT]} until the file changes)"
        if counts[State.FAILED]
        else "  failed: 0"
    )
    if counts[State.UNDONE]:
        print(f"  undone (photoscribe's metadata taken out): {counts[State.UNDONE]}")
    for row in failures:
        again = " (will be tried again)" if row.transient else ""
        print(f"    {display(row.path)}: {row.error}{again}")
    print(describe_daemon(daemon))
    return 0


def caption_problems(store, limit: int = 3) -> list[tuple[str, int]]:
    """The commonest reasons, recorded in the index, why photos still wait for a caption."""
    rows = store.query(
        "SELECT error, count(*) AS n FROM photos WHERE state = ? AND error IS NOT NULL "
        "GROUP BY error ORDER BY n DESC, error LIMIT ?",
        (State.NEEDS_CAPTION.value, limit),
    )
    return [(row["error"], row["n"]) for row in rows]


def daemon_status(store) -> dict | None:
    """What a running `photoscribe run` last published, or None if none runs."""
    from photoscribe.store.queue import read_state

    found = read_state(store, "daemon")
    if found is None:
        return None
    state, age = found
    alive = state.get("state") == "running" and age < DAEMON_STALE_S and _pid_alive(state)
    return {**state, "running": alive, "age_s": round(age, 1)}


def _pid_alive(state: dict) -> bool:
    try:
        os.kill(int(state.get("pid", 0)), 0)
    except PermissionError:
        return True  # runs as another user (the service)
    except (OSError, ValueError):
        return False
    return True


def describe_daemon(daemon: dict | None) -> str:
    if not daemon or not daemon["running"]:
        return "daemon: not running"
    return (
        f"daemon: running (pid {daemon['pid']}) · {daemon['status']}\n"
        f"  in progress: {daemon['in_progress']} · CLIP model {daemon['model']} · "
        f"LLM {daemon['llm']}"
    )


def _quiet_libraries(record: logging.LogRecord) -> bool:
    """open_clip logs its chatter on the root logger; keep only its warnings."""
    chatter = record.name == "root" and f"{os.sep}open_clip{os.sep}" in record.pathname
    return not chatter or record.levelno >= logging.WARNING


def cmd_caption(config: Config, args: argparse.Namespace) -> int:
    from photoscribe.progress import Progress
    from photoscribe.service import retry_captions

    summary = retry_captions(config, args.paths, progress=Progress())
    if summary.captions_off:
        print(f"0 captions written, {summary.failed} failed; captions off ({summary.captions_off})")
    else:
        print(
            f"{summary.captioned} captions written, {summary.failed} failed, "
            f"{summary.waiting} still waiting for the LLM"
        )
    for path, reason in summary.failures[:MAX_FAILURES_SHOWN]:
        print(f"  failed: {display(path)}: {reason}")
    for line in caption_outlook(summary, "`photoscribe caption --retry-pending`"):
        print(f"  {line}")
    return 1 if summary.failed else 0


def cmd_describe(config: Config, args: argparse.Namespace) -> int:
    from photoscribe.service import describe

    def show(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    tagging, _ = describe(config, args.photo, show)
    sys.stdout.write("\n")
    print("keywords: " + ", ".join(f"{k.label} ({k.score:.2f})" for k in tagging.keywords))
    return 0


def cmd_undo(config: Config, args: argparse.Namespace) -> int:
    from photoscribe.errors import ConfigError
    from photoscribe.service import undo

    if bool(args.paths) == args.all:
        raise ConfigError("give the photos or folders to undo, or --all (not both)")
    summary = undo(config, args.paths, everything=args.all, dry_run=args.dry_run, show=show_plan)
    verb = "would be restored" if args.dry_run else "restored"
    line = f"{summary.restored} photos {verb}, {len(summary.failures)} failed"
    if summary.untouched:
        line += f", {summary.untouched} with nothing photoscribe wrote on record"
    print(line)
    for path, reason in summary.failures[:MAX_FAILURES_SHOWN]:
        print(f"  failed: {display(path)}: {reason}")
    return 1 if summary.failures else 0


def cmd_index_rebuild(config: Config, args: argparse.Namespace) -> int:
    from photoscribe.errors import ConfigError
    from photoscribe.progress import Progress
    from photoscribe.service import rebuild_index

    roots = args.paths or [*config.watch.folders, *config.watch.poll_folders]
    if not roots:
        raise ConfigError("give the folders to rebuild the index from (or set watch.folders)")
    summary, aside = rebuild_index(config, roots, embeddings=args.embeddings, progress=Progress())
    if aside is not None:
        print(f"the damaged index was kept as {display(aside)}")
    print(summary.line())
    if args.embeddings:
        print(f"{summary.embeddings} CLIP embeddings computed")
    else:
        print("CLIP search needs embeddings: `photoscribe index rebuild --embeddings` adds them")
    for path, reason in summary.failures[:MAX_FAILURES_SHOWN]:
        print(f"  failed: {display(path)}: {reason}")
    return 1 if summary.failures else 0


def show_plan(plan) -> None:  # an undo.UndoPlan
    show_changes(plan.path, {k: (plan.current.get(k), v) for k, v in plan.changes.items()})


def show_changes(path: Path, changes: dict) -> None:
    """One file's changes: key: before → after."""
    if not changes:
        print(f"{display(path)}: nothing to change")
        return
    print(display(path))
    for key, (before, after) in changes.items():
        print(f"    {key}: {_short(before)} → {_short(after)}")


def _short(value, limit: int = 80) -> str:
    text = "(none)" if value is None else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def cmd_labels_calibrate(config: Config, args: argparse.Namespace) -> int:
    from photoscribe.vision.calibrate import cmd_calibrate

    return cmd_calibrate(config, args)


def cmd_doctor(config: Config, args: argparse.Namespace) -> int:
    import dataclasses

    from photoscribe.doctor import run_checks

    def make_captioner():
        from photoscribe.caption import Captioner

        llm = dataclasses.replace(config.llm, retries=0)  # report, don't wait
        return Captioner(llm, config.llm_api_key())

    checks = run_checks(config, make_captioner)
    if args.json:
        json.dump([c.as_json() for c in checks], sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        for check in checks:
            print(f"{'ok ' if check.ok else 'BAD'} {check.name}: {check.detail}")
    return 0 if all(c.ok for c in checks) else 1


def setup_logging(verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    fmt = "%(levelname)s %(name)s: %(message)s"
    if not os.environ.get("JOURNAL_STREAM"):
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_quiet_libraries)
    for noisy in ("httpx", "httpx2", "httpcore", "httpcore2", "openai", "huggingface_hub", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        config = load_config(args.config, explicit=args.config is not None)
        if not args.verbose:
            logging.getLogger().setLevel(config.log_level.upper())
        return args.func(config, args)
    except PhotoscribeError as exc:
        print(f"photoscribe: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("photoscribe: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """The `photoscribe` command: ``main()``, then exit with its code. After Ctrl-C the
    writes are done, so caption requests still under way must not hold up the exit."""
    code = main()
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)
