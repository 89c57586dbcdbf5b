"""Support staff's commands for local backups: list, show, verify, replay, export, prune."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from voicelog.cli.commands import arguments
from voicelog.cli.views.backups import (
    data_location,
    export_views,
    open_catalog,
    print_json,
    readable,
    session_filter,
    spool_for_support,
    warn_unreadable,
    with_manager,
)
from voicelog.services.backup import BackupError, BackupWriter
from voicelog.services.config import Durability, LogLevel, Settings
from voicelog.services.domain import wall_ms
from voicelog.services.ops import configure_logging
from voicelog.services.spool import Spool
from voicelog.services.support import rewrite_from_spool, verify

if TYPE_CHECKING:
    from voicelog.services.support import Catalog, ReplayObserver, ReplayRequest, ReplaySummary

GROUP_EPILOG = """examples:
  voicelog backups list --mac 68:25:dd:ba:39:78 --since 2d
  voicelog backups show 3f2c9a1e                     # a session id (or its start), or a backup file
  voicelog backups verify
  voicelog backups replay --status dead-letter --dry-run
  voicelog backups replay /tmp/from-box-7/2026-05-01/*.json
  voicelog backups export --mac 68:25:dd:ba:39:78 --format csv --output ticket-1234.csv
  voicelog backups prune --dry-run
times: 2026-05-01 (a whole day), 2026-05-01T10:30 (UTC unless +02:00 is given), or an age: 30m, 6h, 2d."""
REPLAY_EPILOG = """examples:
  voicelog backups replay --status dead-letter              # after fixing why they were rejected
  voicelog backups replay --session 3f2c9a1e --mac 68:25:dd:ba:39:78   # captured without a MAC
  voicelog backups replay --mac 68:25:dd:ba:39:78 --since 2026-05-01 --dry-run
  voicelog backups replay copied/2026-05-01/*.json          # backups from another box: imported, sent
  voicelog backups replay --session 3f2c9a1e --force        # send delivered turns again (duplicates!)
exit: 0 every selected turn delivered, 1 some are not (see the summary), 2 nothing could start.
Safe to interrupt (Ctrl-C finishes the turn in flight) and to run again: delivered turns are skipped.
While the daemon runs it does the sending; replay requeues, asks it to flush and follows."""


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the ``backups`` command group; ``common`` holds the options every command takes."""
    group = commands.add_parser("backups", help="list, show, verify, replay, export and prune local backups",
                                description=__doc__, epilog=GROUP_EPILOG, parents=[common],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = group.add_subparsers(dest="backups_command", metavar="SUBCOMMAND", required=True)
    sub.common = common  # each subcommand takes --config and --env-file too
    _add_list(sub)
    _add_show(sub)
    _add_verify(sub)
    _add_replay(sub)
    _add_export(sub)
    _add_prune(sub)
    _add_purge(sub)


def _parser(sub: argparse._SubParsersAction, name: str, help_text: str, handler, epilog: str = ""):
    parser = sub.add_parser(name, help=help_text, description=help_text, epilog=epilog,
                            parents=[sub.common], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(handler=handler, quiet_logs=True)
    return parser


def _add_filters(parser: argparse.ArgumentParser, statuses: tuple[str, ...]) -> None:
    parser.add_argument("--mac", type=arguments.mac, help="only this device's sessions ('unknown': captured without one)")
    parser.add_argument("--since", type=arguments.when, help="sessions started at or after (date, datetime or age)")
    parser.add_argument("--until", type=arguments.when_end, help="sessions started before (a date includes that day)")
    parser.add_argument("--status", type=arguments.status, action="append", metavar="|".join(statuses),
                        help="only sessions with turns in this status (repeatable)")


def _add_list(sub: argparse._SubParsersAction) -> None:
    parser = _parser(sub, "list", "sessions with MAC, times and turn counts by delivery status", cmd_list,
                     "examples:\n  voicelog backups list --status dead-letter\n  voicelog backups list --json")
    _add_filters(parser, ("delivered", "pending", "parked", "dead-letter", "open", "skipped"))
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _add_show(sub: argparse._SubParsersAction) -> None:
    parser = _parser(sub, "show", "one session as a conversation, with each turn's delivery status",
                     cmd_show, "examples:\n  voicelog backups show 3f2c9a1e-...\n"
                     "  voicelog backups show backups/2026-05-01/3f2c9a1e-..._6825ddba3978.json")
    parser.add_argument("session", metavar="SESSION", help="session id (or a unique start of it), or a backup file")
    parser.add_argument("--json", action="store_true", help="the session in the backup format")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also each turn's language and what LiveKit measured (waits, in ms)")


def _add_verify(sub: argparse._SubParsersAction) -> None:
    parser = _parser(sub, "verify", "check every backup file against the schema and the spool (exit 1 if "
                     "anything is wrong)", cmd_verify)
    parser.add_argument("--fix", action="store_true", help="rewrite the broken or missing backups of spool "
                        "sessions from the spool (the spool is the truth), then check again")
    parser.add_argument("--ack", action="store_true", help="after reporting them, acknowledge the repairs "
                        "found (damaged files quarantined and rebuilt), so later runs pass; this run "
                        "still exits 1")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _add_replay(sub: argparse._SubParsersAction) -> None:
    parser = _parser(sub, "replay", "send selected turns to the Manager again (or for the first time)",
                     cmd_replay, REPLAY_EPILOG)
    parser.add_argument("files", nargs="*", type=Path, metavar="FILE",
                        help="backup files, e.g. copied from another box (imported into this spool)")
    parser.add_argument("--session", action="append", default=[], help="a session id (repeatable)")
    parser.add_argument("--mac", type=arguments.mac, help="this device's sessions; also the MAC given to named sessions "
                        "captured without one")
    parser.add_argument("--since", type=arguments.when, help="sessions started at or after")
    parser.add_argument("--until", type=arguments.when_end, help="sessions started before")
    parser.add_argument("--status", type=arguments.status, action="append", metavar="dead-letter|parked|pending",
                        help="only turns in this status (default: every undelivered one)")
    parser.add_argument("--force", action="store_true",
                        help="also re-send delivered turns, with their original report time and key")
    parser.add_argument("--dry-run", action="store_true", help="show what would be sent; send nothing")
    parser.add_argument("--manager-url", help="deliver to this Manager (base URL with context path)")
    parser.add_argument("--secret", help="its server secret (prefer MANAGER_API_SECRET: argv is visible in ps)")
    parser.add_argument("--max-attempts", type=int, default=5, help="tries per turn on retryable failures (5)")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up waiting after SECONDS (300)")
    parser.add_argument("-v", "--verbose", action="store_true", help="keep delivery log lines on stderr")


def _add_export(sub: argparse._SubParsersAction) -> None:
    parser = _parser(sub, "export", "one session or a filter as JSON (backup format) or CSV, for a ticket",
                     cmd_export, "examples:\n  voicelog backups export 3f2c9a1e --output s.json\n"
                     "  voicelog backups export --mac 68:25:dd:ba:39:78 --since 7d --format csv")
    parser.add_argument("session", nargs="?", metavar="SESSION", help="session id or backup file")
    _add_filters(parser, ("delivered", "pending", "parked", "dead-letter"))
    parser.add_argument("--format", choices=("json", "csv"), default="json")
    parser.add_argument("--output", type=Path, help="write here (mode 0600) instead of stdout")
    parser.add_argument("--audio", type=Path, metavar="DIR", help="also write each turn's audio clip (audio.enabled) "
                        "as DIR/<session>_<seq>.wav, 16 kHz mono, mode 0600")


def _add_purge(sub: argparse._SubParsersAction) -> None:
    parser = _parser(sub, "purge", "erase every local copy of a device's or session's chats (spool, "
                     "backups, dead-letter, quarantine) and its conversation memory (Redis too)", cmd_purge,
                     "examples:\n  voicelog backups purge --mac 68:25:dd:ba:39:78 --dry-run\n"
                     "  voicelog backups purge --session 3f2c9a1e-..._6825ddba3978")
    parser.add_argument("--mac", type=arguments.mac, help="the device whose chats are erased")
    parser.add_argument("--session", help="one session to erase")
    parser.add_argument("--dry-run", action="store_true", help="list what would be erased; erase nothing")


def cmd_purge(settings: Settings, args: argparse.Namespace) -> int:
    """Erase a device's or a session's local copies and say what went."""
    from voicelog.cli.views.sessions import purge_lines
    from voicelog.services.memory import MemoryEraser
    from voicelog.services.privacy import purge

    if not args.mac and not args.session:
        print("voicelog: purge needs --mac or --session", file=sys.stderr)
        return 2
    spool = spool_for_support(settings, create=True)
    try:
        report = purge(spool, settings.chat_history.backup_dir, mac=args.mac, session_id=args.session,
                       dry_run=args.dry_run, memory=MemoryEraser(settings.memory, spool))
    finally:
        spool.close()
    purge_lines(report, dry_run=args.dry_run)
    return 1 if report.errors else 0


def _add_prune(sub: argparse._SubParsersAction) -> None:
    parser = _parser(sub, "prune", "delete delivered sessions older than chat_history.retention_days, "
                     "from the spool and their backup files", cmd_prune,
                     "examples:\n  voicelog backups prune --dry-run\n  voicelog backups prune")
    parser.add_argument("--include-undelivered", action="store_true",
                        help="also delete sessions with undelivered turns older than max_undelivered_days")
    parser.add_argument("--dry-run", action="store_true", help="show what would be removed; remove nothing")


# --- handlers ----------------------------------------------------------------------------------

def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    """Print the sessions that pass the filters: a table on a terminal, whole lines in a pipe."""
    from voicelog.cli.views.session_list import list_title, plain_lines, terminal_table
    from voicelog.services.support import summary_json

    with open_catalog(settings) as catalog:
        views = catalog.summaries(session_filter(args))
        title = list_title(views, data_location(settings, catalog))
        if args.json:
            print_json([summary_json(v) for v in views])
            print(title, file=sys.stderr)
        elif (console := Console()).is_terminal:
            known = catalog.spool_session_ids() | {v.session.session_id for v in views}
            console.print(terminal_table(views, console.width, known, title))
        else:
            print("\n".join(plain_lines(views)))
            print(title, file=sys.stderr)  # stdout stays one line per session, for scripts
        warn_unreadable(catalog)
    return 0


def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    """Print one session as a conversation."""
    from voicelog.cli.views.sessions import show_session
    from voicelog.services.support import clip_seconds, session_json

    with open_catalog(settings) as catalog:
        try:
            view = catalog.load(args.session)
        except (KeyError, ValueError, BackupError) as exc:
            print(f"voicelog: {str(exc).strip(chr(34))}", file=sys.stderr)
            return 1
        audio = clip_seconds(catalog.spool, view.session.session_id)
    view = readable(view, settings)
    if args.json:
        print_json(session_json(view))
    else:
        show_session(Console(), view, verbose=args.verbose, audio=audio)
    return 0


def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    """Check backups against the schema and the spool, and report repairs; 1 if anything was wrong."""
    from voicelog.cli.views.sessions import verify_lines
    from voicelog.services.support import acknowledge, verify_json

    with open_catalog(settings) as catalog:
        where = data_location(settings, catalog)
        report = verify(catalog)
        if args.fix and catalog.spool is not None:
            history = settings.chat_history
            writer = BackupWriter(history.backup_dir, fsync=history.durability == Durability.POWER)
            fixed = rewrite_from_spool(catalog, report, writer, wall_ms())
            print(f"rewrote {fixed} backup file(s) from the spool",
                  file=sys.stderr if args.json else sys.stdout)
            report = verify(catalog)
    if args.json:
        print_json(verify_json(report))
    else:
        verify_lines(Console(), report, where)
    if args.ack and report.repairs:
        count = acknowledge(report.repairs)
        print(f"acknowledged {count} repair(s): later runs of verify no longer fail on them",
              file=sys.stderr if args.json else sys.stdout)
    return 1 if report.errors else 0


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    """Re-send the selected turns and say whether all of them are delivered now."""
    from voicelog.cli.views.replay import (
        CurrentStderr,
        PlainReplayProgress,
        RichReplayProgress,
        replay_verdict,
    )
    from voicelog.services.support import ReplayError, ReplayRequest

    try:
        settings = with_manager(settings, args)
    except ValueError as exc:
        print(f"voicelog: {exc}", file=sys.stderr)
        return 2
    request = ReplayRequest(tuple(args.session), tuple(args.files), args.mac, args.since, args.until,
                            tuple(args.status or ()), args.force, args.dry_run, args.max_attempts,
                            args.timeout, own_manager=bool(args.manager_url))
    console = Console(soft_wrap=True)  # lines for logs and tickets are never cut
    if console.is_terminal:
        # Every outcome is on screen already; the few log lines left go above the progress bar.
        level = settings.logging.level if args.verbose else LogLevel.ERROR
        configure_logging(settings.logging.model_copy(update={"level": level}), stream=CurrentStderr(),
                          secrets=[settings.manager_api.secret.reveal()])
    progress = RichReplayProgress(console) if console.is_terminal else PlainReplayProgress(console)
    spool = spool_for_support(settings, create=not args.dry_run)
    try:
        summary = asyncio.run(_replay(settings, spool, request, progress))
    except ReplayError as exc:
        print(f"voicelog: cannot replay: {exc}", file=sys.stderr)
        return 2
    finally:
        progress.close()
        if spool is not None:
            spool.close()
    replay_verdict(console, summary)
    return 0 if summary.ok or summary.mode in ("dry-run", "nothing") else 1


async def _replay(settings: Settings, spool: Spool | None, request: ReplayRequest,
                  progress: ReplayObserver) -> ReplaySummary:
    """Run the replay with Ctrl-C meaning "finish the turn in flight, then stop"."""
    from voicelog.services.support import replay

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):  # not the main thread
            loop.add_signal_handler(sig, _stop_once, loop, sig, stop)
            installed.append(sig)
    try:
        return await replay(settings, spool, request, progress, stop)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _stop_once(loop: asyncio.AbstractEventLoop, sig: signal.Signals, stop: asyncio.Event) -> None:
    stop.set()
    loop.remove_signal_handler(sig)  # a second Ctrl-C interrupts at once


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    """Write the chosen sessions as JSON or CSV."""
    from voicelog.services.support import UnsafeOutput, private_output, write_csv, write_json

    with open_catalog(settings) as catalog:
        try:
            views = [readable(v, settings) for v in export_views(catalog, args)]
        except (KeyError, ValueError, BackupError) as exc:
            print(f"voicelog: {str(exc).strip(chr(34))}", file=sys.stderr)
            return 1
        if args.audio is not None and _export_audio(catalog, views, args.audio):
            return 1
    try:
        with private_output(args.output) as out:
            count = (write_csv if args.format == "csv" else write_json)(views, out)
    except BrokenPipeError:
        raise  # the reader went away (`| head`): cli/app.py ends quietly with the SIGPIPE status
    except (UnsafeOutput, OSError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"voicelog: export not written: {why}", file=sys.stderr)
        return 1
    if args.output:
        print(f"wrote {len(views)} session(s) ({count} {'rows' if args.format == 'csv' else 'sessions'}) "
              f"to {args.output}", file=sys.stderr)
    return 0


def _export_audio(catalog: Catalog, views: list, folder: Path) -> bool:
    """Write the sessions' clips as WAV files and say so; True when it could not."""
    from voicelog.services.support import export_clips

    if catalog.spool is None:
        print("voicelog: no spool on this box: audio clips live only in the spool", file=sys.stderr)
        return True
    try:
        written, problems = export_clips(catalog.spool, [v.session.session_id for v in views], folder)
    except OSError as exc:
        print(f"voicelog: audio not written: {exc.strerror or exc}", file=sys.stderr)
        return True
    for problem in problems:
        print(f"voicelog: {problem.session_id} turn #{problem.seq}: audio clip not written ({problem.what})",
              file=sys.stderr)
    print(f"wrote {len(written)} audio clip(s) to {folder}", file=sys.stderr)
    return False


def cmd_prune(settings: Settings, args: argparse.Namespace) -> int:
    """Remove old delivered sessions and their backups, and say what went."""
    from voicelog.cli.views.sessions import prune_lines
    from voicelog.services.memory import MemoryEraser
    from voicelog.services.privacy import prune

    spool = spool_for_support(settings, create=True)
    assert spool is not None
    try:
        report = prune(spool, settings.chat_history.backup_dir, settings.chat_history, now_ms=wall_ms(),
                       include_undelivered=args.include_undelivered, dry_run=args.dry_run,
                       memory=MemoryEraser(settings.memory, spool))
    finally:
        spool.close()
    prune_lines(Console(), report)
    return 1 if report.errors else 0
