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
    scan.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="spread the work over a Ray cluster: auto (the one this machine joined with "
        "`ray start`), HOST:PORT or ray://HOST:10001 (its head), or local (Ray on this "
        "machine only); needs photoscribe[cluster] and the folders at the same path on "
        "every node",
    )
    scan.set_defaults(func=cmd_scan)

    run = sub.add_parser(
        "run", help="watch the configured folders and process photos as they arrive (daemon)"
    )
    run.set_defaults(func=cmd_run)

    add_search_parser(sub)

    similar = sub.add_parser("similar", help="photos that look like PHOTO (CLIP embeddings)")
    similar.add_argument("photo", type=Path)
    similar.add_argument("-n", "--limit", type=_positive, help="at most this many results")
    similar.add_argument("--json", action="store_true", help="machine-readable output")
    similar.set_defaults(func=cmd_similar)

    duplicates = sub.add_parser(
        "duplicates", help="groups of exact copies (same image data) and near copies"
    )
    duplicates.add_argument(
        "--threshold", type=float, default=0.95, help="cosine for near copies (default 0.95)"
    )
    duplicates.add_argument("--folder", type=Path, help="only photos below this folder")
    duplicates.add_argument("--json", action="store_true", help="machine-readable output")
    duplicates.set_defaults(func=cmd_duplicates)

    serve = sub.add_parser("serve", help="a local web page: search, photos, look-alikes, status")
    serve.add_argument("--port", type=int, help="instead of web.port (0: any free port)")
    serve.set_defaults(func=cmd_serve)

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
    facts = index.add_parser(
        "facts",
        help="record date taken, camera and place (search filters) for photos indexed "
        "before photoscribe kept them",
    )
    facts.set_defaults(func=cmd_index_facts)

    add_vocabulary_commands(sub)

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
        cluster=args.cluster,
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
    if s.nodes:
        out.write(f"  {node_line(s.nodes, s.cluster_seconds)}\n")


def node_line(nodes: dict[str, int], seconds: float) -> str:
    """The cluster scan's photos per node, and each node's photos/s over the run."""
    parts = [
        f"{name} {count} photos ({count / max(seconds, 1e-9):.1f}/s)"
        for name, count in sorted(nodes.items(), key=lambda kv: -kv[1])
    ]
    return "per node: " + ", ".join(parts)


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


def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    import dataclasses

    from photoscribe.web import serve

    if args.port is not None:
        web = dataclasses.replace(config.web, port=args.port)
        config = dataclasses.replace(config, web=web)
    serve(config, announce=lambda line: print(line, flush=True))
    return 0


SEARCH_VALUE_OPTIONS = ("-n", "--limit", "--folder", "--after", "--before", "--keyword", "--camera")
SEARCH_FLAGS = ("-h", "--help", "--text-only", "--json")


def add_search_parser(sub) -> None:
    search = sub.add_parser(
        "search",
        help="find photos by caption, keywords, names and CLIP similarity (Chinese or English)",
        description='Words are ANDed; "a phrase" keeps words together; word* matches the '
        "start of words; -word leaves out photos whose text has it (also after --). "
        "Chinese needs no spaces.",
    )
    search.add_argument("words", nargs="*", metavar="WORD")
    search.add_argument("-n", "--limit", type=_positive, help="at most this many results")
    search.add_argument(
        "--text-only", action="store_true", help="full-text only: no CLIP model is loaded (fast)"
    )
    search.add_argument("--json", action="store_true", help="machine-readable output")
    search.add_argument("--folder", type=Path, help="only photos below this folder")
    search.add_argument("--after", type=_day, metavar="YYYY-MM-DD", help="taken on or after")
    search.add_argument("--before", type=_day, metavar="YYYY-MM-DD", help="taken before")
    search.add_argument(
        "--keyword", action="append", default=[], help="has this keyword (repeat for several)"
    )
    search.add_argument("--camera", help="camera make or model contains this")
    search.set_defaults(func=cmd_search)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def _day(text: str):
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; write YYYY-MM-DD") from None


def split_search_exclusions(argv: list[str]) -> tuple[list[str], list[str]]:
    """`photoscribe search cat -dog`: ``-dog`` is a word to leave out, not an option.
    Returns argv without such words, and the words."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):  # options before the command
        i += 2 if argv[i] in ("-c", "--config") else 1
    if i >= len(argv) or argv[i] != "search":
        return argv, []
    kept, words = argv[: i + 1], []
    rest = iter(argv[i + 1 :])
    for arg in rest:
        if arg == "--":
            kept += [arg, *rest]
            break
        if arg in SEARCH_VALUE_OPTIONS:
            kept += [arg, next(rest, "")]
        elif _is_exclusion(arg):
            words.append(arg)
        else:
            kept.append(arg)
    return kept, words


def _is_exclusion(arg: str) -> bool:
    if len(arg) < 2 or arg[0] != "-" or not arg[1].isalpha() or arg in SEARCH_FLAGS:
        return False
    known = (*SEARCH_VALUE_OPTIONS, *SEARCH_FLAGS)
    return not (arg[:2] == "-n" and arg[2:].lstrip("-").isdigit()) and not any(
        arg.startswith(o + "=") for o in known
    )


def cmd_search(config: Config, args: argparse.Namespace) -> int:
    from photoscribe.search import SearchQuery
    from photoscribe.service import run_search

    query = SearchQuery(
        text=" ".join(args.words),
        limit=args.limit or config.search.limit,
        folder=args.folder.absolute() if args.folder else None,
        after=args.after,
        before=args.before,
        keywords=tuple(args.keyword),
        camera=args.camera,
        use_clip=not args.text_only,
    )
    hits = run_search(config, query)
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


def _print_hits(hits, as_json: bool) -> None:
    if as_json:
        json.dump([h.as_json() for h in hits], sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return
    for hit in hits:
        keywords = ", ".join(hit.keywords)
        print(f"{display(hit.path)}\n    {hit.caption or '(no caption yet)'}\n    [{keywords}]")
    if not hits:
        print("no matches", file=sys.stderr)


def cmd_similar(config: Config, args: argparse.Namespace) -> int:
    from photoscribe.search.alike import similar
    from photoscribe.search.cache import VectorCache
    from photoscribe.store import open_store

    store = open_store(config.index_path, readonly=True)
    row = store.by_path(args.photo.absolute())
    model = row.model if row is not None and row.model else ""
    vectors = VectorCache(store, model, config.cache_dir)
    limit = args.limit or config.search.limit
    _print_hits(similar(store, vectors, args.photo.absolute(), limit), args.json)
    return 0


def cmd_duplicates(config: Config, args: argparse.Namespace) -> int:
    from photoscribe.errors import ConfigError
    from photoscribe.search.alike import exact_copies, near_copies
    from photoscribe.store import open_store
    from photoscribe.vision.model import resolve_weights

    if not 0 < args.threshold <= 1:
        raise ConfigError(f"--threshold must be above 0 and at most 1 (got {args.threshold})")
    store = open_store(config.index_path, readonly=True)
    folder = args.folder.absolute() if args.folder else None
    model = resolve_weights(config.model).model_id
    groups = exact_copies(store, folder) + near_copies(store, model, args.threshold, folder)
    if args.json:
        json.dump([g.as_json() for g in groups], sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return 0
    for group in groups:
        how = "same image data" if group.kind == "exact" else f"alike ≥ {group.similarity:.3f}"
        print(f"{len(group.paths)} photos, {how}:")
        for path in group.paths:
            print(f"    {display(path)}")
    if not groups:
        print("no duplicates found", file=sys.stderr)
    return 0


def cmd_status(config: Config, args: argparse.Namespace) -> int:
    from photoscribe.statusreport import status_report
    from photoscribe.store import open_store
    from photoscribe.store.photos import PERMANENT, TRANSIENT

    store = open_store(config.index_path, readonly=True)
    report = status_report(store, config.index_path)
    if args.json:
        json.dump(report, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return 0
    counts, kinds = report["counts"], report["failures"]
    print(f"index: {config.index_path}")
    print(f"  done (keywords + caption): {counts[State.DONE]}")
    print(f"  keywords, waiting for a caption: {counts[State.NEEDS_CAPTION]}")
    for problem in report["caption_problems"]:
        reason, photos = problem["reason"], problem["photos"]
        kind, sep, why = reason.partition(": ")
        kind = kind.removeprefix("caption ")
        print(f"    {photos} {kind}: {why}" if sep else f"    {photos}: {reason}")
    print(
        f"  failed: {counts[State.FAILED]} ({kinds[TRANSIENT]} to be tried again: disk, "
        f"permission or I/O problems; {kinds[PERMANENT]} until the file changes)"
        if counts[State.FAILED]
        else "  failed: 0"
    )
    if counts[State.UNDONE]:
        print(f"  undone (photoscribe's metadata taken out): {counts[State.UNDONE]}")
    for failure in report["last_failures"]:
        again = " (will be tried again)" if failure["kind"] == TRANSIENT else ""
        print(f"    {failure['path']}: {failure['reason']}{again}")
    print(describe_daemon(report["daemon"]))
    return 0


def describe_daemon(daemon: dict | None) -> str:
    if not daemon or not daemon["running"]:
        return "daemon: not running"
    text = (
        f"daemon: running (pid {daemon['pid']}) · {daemon['status']}\n"
        f"  in progress: {daemon['in_progress']} · CLIP model {daemon['model']} · "
        f"LLM {daemon['llm']}"
    )
    for folder, why in daemon.get("unavailable", {}).items():  # e.g. a NAS not mounted
        text += f"\n  unavailable: {folder}: {why}; its photos stay in the index"
    return text


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
    from photoscribe.service import build_wording, describe

    def show(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    tagging, _ = describe(config, args.photo, show)
    sys.stdout.write("\n")
    names = build_wording(config).names([k.label for k in tagging.keywords])
    scored = (f"{name} ({k.score:.2f})" for name, k in zip(names, tagging.keywords, strict=True))
    print("keywords: " + ", ".join(scored))
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


def cmd_index_facts(config: Config, args: argparse.Namespace) -> int:
    from photoscribe.search.facts import backfill
    from photoscribe.store import open_store

    store = open_store(config.index_path)
    try:
        print(f"{backfill(store)} photos got their date taken, camera or place")
    finally:
        store.close()
    return 0


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

    def make_captioner(url: str):
        from photoscribe.builders import one_server
        from photoscribe.caption import Captioner
        from photoscribe.service import caption_names

        llm = dataclasses.replace(one_server(config.llm, url), retries=0)  # report, don't wait
        return Captioner(llm, config.llm_api_key(), name_of=caption_names(config))

    checks = run_checks(config, make_captioner)
    if args.json:
        json.dump([c.as_json() for c in checks], sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        for check in checks:
            print(f"{'ok ' if check.ok else 'BAD'} {check.name}: {check.detail}")
    return 0 if all(c.ok for c in checks) else 1


def quiet_broken_pipe() -> int:
    """The reader of stdout went away: nothing more can be shown, and Python's own flush
    at exit must not print a traceback either. Exit as a program killed by SIGPIPE."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141  # 128 + SIGPIPE, what a shell reports for e.g. `yes | head`


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


# -- the vocabulary: `photoscribe labels [list|ACTION]`, `photoscribe relabel` ----------
def add_vocabulary_commands(sub) -> None:
    labels = sub.add_parser(
        "labels", help="what the tagger can say: concepts with parents and aliases"
    )
    actions = labels.add_subparsers(dest="labels_command", metavar="ACTION")
    labels.set_defaults(func=cmd_labels_list, language=None, json=False, query=None)
    listing = actions.add_parser("list", help="list the vocabulary (the default action)")
    listing.add_argument("query", nargs="?", help="only concepts whose id/name/alias holds this")
    listing.add_argument("--language", choices=("en", "zh"), help="names in this language")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=cmd_labels_list)
    calibrate = actions.add_parser(
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

    relabel = sub.add_parser(
        "relabel",
        help="rewrite photoscribe's keywords of indexed photos in the configured language "
        "(after changing `language` or concept names; no CLIP, no LLM)",
    )
    relabel.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="default: all")
    relabel.set_defaults(func=cmd_relabel)


def labels_default_action(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """`photoscribe labels [QUERY]` means `photoscribe labels list [QUERY]`."""
    i, command = 0, None
    while i < len(argv):
        if argv[i] in ("-c", "--config"):
            i += 2
            continue
        if not argv[i].startswith("-"):
            command = argv[i]
            break
        i += 1
    if command != "labels":
        return argv
    rest = argv[i + 1 :]
    choices = next(
        a.choices
        for a in _labels_parser(parser)._actions
        if isinstance(a, argparse._SubParsersAction)
    )
    if not rest or rest[0] in choices or rest[0] in ("-h", "--help"):
        return argv
    return [*argv[: i + 1], "list", *rest]


def _labels_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["labels"]


def cmd_labels_list(config: Config, args: argparse.Namespace) -> int:
    from photoscribe.config import keyword_languages
    from photoscribe.vision.vocabulary import vocabulary_for
    from photoscribe.vocabview import as_dict, lines, listed

    vocab = vocabulary_for(config.tagging)
    language = args.language or keyword_languages(config)[0]
    concepts = listed(vocab, args.query)
    if args.json:
        print(json.dumps([as_dict(vocab, c, language) for c in concepts], ensure_ascii=False))
        return 0
    for line in lines(vocab, concepts, language):
        print(line)
    total = len(vocab.taggable())
    shown = f"{len(concepts)} of {total}" if args.query else f"{total}"
    print(f"{shown} concepts ({vocab.source})", file=sys.stderr)
    return 0 if concepts or not args.query else 1


def cmd_relabel(config: Config, args: argparse.Namespace) -> int:
    from photoscribe.relabel import relabel
    from photoscribe.service import build_writer_factory
    from photoscribe.store import open_store

    if not config.metadata.write:
        print("metadata.write is false: photoscribe writes no keywords into photos")
        return 0
    store = open_store(config.index_path)
    try:
        summary = relabel(store, build_writer_factory(config, store), args.paths)
    finally:
        store.close()
    done, failed = summary.tagged, summary.failed
    print(f"{done} photos have their keywords in {config.language} now, {failed} failed")
    for path, reason in summary.failures[:MAX_FAILURES_SHOWN]:
        print(f"  failed: {display(path)}: {reason}")
    return 1 if summary.failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    argv, excluded = split_search_exclusions(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    args = parser.parse_args(labels_default_action(parser, argv))
    if excluded:
        args.words.extend(excluded)
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
    writes are done, so caption requests still under way must not hold up the exit.
    Output into a closed pipe (`photoscribe search x | head`) ends quietly."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        code = quiet_broken_pipe()
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)
