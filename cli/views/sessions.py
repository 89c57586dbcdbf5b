"""What people read on a terminal about sessions: the list, one conversation, verify and prune.

The only place (with ``replay``) that draws with rich: services return records and reports.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from voicelog.cli.views.words import plural
from voicelog.services.domain import ChatType, Turn, TurnStatus
from voicelog.services.privacy import PruneReport, PurgeReport
from voicelog.services.support import SessionView, VerifyReport

COUNTED = ("delivered", "pending", "parked", "dead_letter")
STYLE = {"delivered": "green", "pending": "yellow", "parked": "magenta", "dead_letter": "bold red",
         "open": "cyan", "skipped": "dim"}


def status_label(status: str | TurnStatus) -> str:
    """How a status is written for people: ``dead-letter``, not ``dead_letter``."""
    return str(status).replace("_", "-")


def when(ms: int | None, *, clock_only: bool = False) -> str:
    """A time for people, in UTC: ``2026-05-01 10:22:31Z`` (or ``10:22:31.120`` for a turn)."""
    if ms is None:
        return "-"
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    if clock_only:
        return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def speaker(turn: Turn) -> str:
    """Who said it, in support staff's words."""
    return "child" if turn.chat_type == ChatType.USER else "toy"


# --- for people --------------------------------------------------------------------------------

def _ended(started_ms: int, ended_ms: int | None) -> str:
    return "live" if ended_ms is None else _ended_at(started_ms, ended_ms)[:-4]


def _ended_at(started_ms: int, ended_ms: int) -> str:
    """The end time, without the date when the session ended the day it started."""
    return when(ended_ms)[11:] if when(started_ms)[:10] == when(ended_ms)[:10] else when(ended_ms)


def show_session(console: Console, view: SessionView, *, verbose: bool = False,
                 audio: Mapping[int, float] | None = None) -> None:
    """``backups show``: who said what, when, and what became of each turn."""
    s = view.session
    console.print(f"[bold]Session[/] {escape(s.session_id)}", highlight=False)
    mac = escape(s.mac) if s.mac_valid else f"[bold red]{escape(s.mac)}[/] (no valid MAC: replay it with --mac)"
    console.print(f"Device  {mac} (from {escape(s.mac_source)}) · agent {escape(s.agent_id or '-')}",
                  highlight=False)
    ended = "still live" if s.ended_ms is None else f"{_ended_at(s.started_ms, s.ended_ms)} ({s.end_reason})"
    console.print(f"Time    {when(s.started_ms)} to {escape(ended)}", highlight=False)
    counts = " · ".join(f"[{STYLE[k]}]{n} {status_label(k)}[/]" for k, n in sorted(view.counts.items()))
    skipped = f" · {s.skipped} empty turn(s) not stored" if s.skipped else ""
    console.print(f"Turns   {counts or 'none'}{skipped}", highlight=False)
    where = "not in this box's spool" if view.source == "backup" else "read from the spool"
    console.print(f"Backup  {view.backup_path or 'not written yet'} ({where})", highlight=False,
                  markup=False, soft_wrap=True)
    if audio:
        console.print(f"Audio   {plural(len(audio), 'turn')} with the child's voice kept (♪; "
                      "`backups export --audio DIR` writes them as WAV)", highlight=False)
    console.print(conversation_table(view.turns, verbose=verbose, audio=audio or {}))


# How ``--verbose`` names each measurement (all in ms), in the order a turn goes through them.
MEASURED = (("e2e_latency_ms", "waited"), ("end_of_turn_delay_ms", "end of turn"),
            ("transcription_delay_ms", "transcript"), ("llm_node_ttft_ms", "llm first token"),
            ("llm_node_ttfs_ms", "llm first sentence"), ("tts_node_ttfb_ms", "tts first audio"),
            ("playback_latency_ms", "playback"))


def measured_line(turn: Turn) -> str:
    """A turn's language and measurements in words (empty when nothing was measured)."""
    if turn.meta is None:
        return ""
    parts = [f"language {turn.meta.language}"] if turn.meta.language else []
    metrics = turn.meta.metrics
    if "started_speaking_at_ms" in metrics and "stopped_speaking_at_ms" in metrics:
        spoke = (metrics["stopped_speaking_at_ms"] - metrics["started_speaking_at_ms"]) / 1000
        parts.append(f"spoke {spoke:.1f} s")
    parts += [f"{label} {metrics[key]:g} ms" for key, label in MEASURED if key in metrics]
    return " · ".join(parts)


def conversation_table(turns: Iterable[Turn], *, verbose: bool = False,
                       audio: Mapping[int, float] | None = None) -> Table:
    """The conversation, one row per turn, with interruptions and delivery errors marked."""
    table = Table(header_style="bold", box=box.SIMPLE_HEAD)
    table.add_column("#", justify="right")
    table.add_column("time", no_wrap=True)
    table.add_column("who", no_wrap=True)
    table.add_column("said", ratio=1)
    table.add_column("status", no_wrap=True)
    shown: tuple[str, int] | None = None  # the last error printed, and on which turn
    for turn in turns:
        said = Text(turn.content)
        if turn.interrupted:
            said.append(" [interrupted]", style="italic yellow")
        if audio and turn.seq in audio:
            said.append(f" ♪ {audio[turn.seq]:.1f} s", style="cyan")
        if verbose and measured_line(turn):
            said.append(f"\n· {measured_line(turn)}", style="dim")
        if turn.last_error and turn.status is not TurnStatus.DELIVERED:
            repeated = shown is not None and shown[0] == turn.last_error
            said.append(f"\n↳ same as #{shown[1]}" if repeated else f"\n↳ {turn.last_error}", style="red")
            shown = shown if repeated else (turn.last_error, turn.seq)
        style = STYLE[turn.status.value]
        table.add_row(str(turn.seq), when(turn.captured_ms, clock_only=True), speaker(turn), said,
                      Text(status_label(turn.status), style=style))
    return table


def verify_lines(console: Console, report: VerifyReport, where: str) -> None:
    """``backups verify``: each finding on one line, errors first, then a verdict and where."""
    for finding in sorted(report.findings, key=lambda f: (f.severity != "error", f.where)):
        colour = "red" if finding.severity == "error" else "yellow"
        place = f"session {finding.session_id}" if finding.where == "spool" else finding.where
        console.print(f"[{colour}]{finding.severity.upper()}[/] {escape(place)}: {escape(finding.what)}",
                      highlight=False, soft_wrap=True)
    errors, warnings = len(report.errors), len(report.findings) - len(report.errors)
    repaired = f" (of which {plural(len(report.repairs), 'repair')} of damage found)" if report.repairs else ""
    verdict = "[green]OK[/]" if not errors else f"[red]{plural(errors, 'problem')}{repaired}[/]"
    console.print(f"checked {plural(report.files, 'backup file')} and {plural(report.sessions, 'session')}: "
                  f"{verdict}, {plural(warnings, 'warning')}", highlight=False, soft_wrap=True)
    if report.acknowledged_repairs:
        console.print(f"{plural(report.acknowledged_repairs, 'earlier repair')} acknowledged "
                      "(under quarantine/, kept until retention removes them)", highlight=False, soft_wrap=True)
    console.print(f"read from {escape(where)}", highlight=False, soft_wrap=True)


def prune_lines(console: Console, report: PruneReport) -> None:
    """``backups prune``: each removed session, what was kept, and the totals."""
    verb = "would remove" if report.dry_run else "removed"
    for s in report.removed:
        extra = f", {s.undelivered} undelivered" if s.undelivered else ""
        console.print(f"{verb} {s.session_id} ({s.mac}, ended {when(s.ended_ms)}, {s.turns} turns{extra})"
                      + (f" and {s.backup_file}" if s.backup_file else ""), highlight=False, markup=False,
                      soft_wrap=True)
    for s in report.kept_undelivered:
        console.print(f"[yellow]kept[/] {escape(s.session_id)}: {s.undelivered} of {s.turns} turns not delivered "
                      "(--include-undelivered drops them once past max_undelivered_days)",
                      highlight=False, soft_wrap=True)
    for error in report.errors:
        console.print(f"[red]ERROR[/] {escape(error)}", highlight=False)
    for path in report.temp_files_removed:
        console.print(f"removed {path} (a temporary file a killed writer left)", highlight=False,
                      markup=False, soft_wrap=True)
    console.print(f"{verb} {plural(len(report.removed), 'session')}, {plural(report.turns_removed, 'turn')} "
                  f"ended before {when(report.cutoff_ms)}; kept {len(report.kept_undelivered)} "
                  "with undelivered turns", highlight=False)


def purge_lines(report: PurgeReport, *, dry_run: bool) -> None:
    """``backups purge``: what was (or would be) erased, file by file, in plain lines."""
    verb = "would erase" if dry_run else "erased"
    live = (f" ({len(report.live)} still live: {'their' if len(report.live) > 1 else 'its'} further turns "
            f"{'would be' if dry_run else 'are'} refused and counted)") if report.live else ""
    voices = f", {plural(report.clips, 'audio clip')}" if report.clips else ""
    print(f"{verb} {plural(len(report.sessions), 'session')}{live}, {plural(report.turns, 'turn')}{voices}, "
          f"{plural(len(report.files), 'backup file')}")
    for path in report.files:
        print(f"  {path}")
    if report.leftovers:
        print(f"also removed {len(report.leftovers)} temporary file(s) a killed backup writer left:")
        for path in report.leftovers:
            print(f"  {path}")
    if report.memory is not None:
        print(f"conversation memory: erased here; in Redis: {report.memory.redis}"
              + (f" ({report.memory.redis_turns} turns)" if report.memory.redis_turns else ""))
    for error in report.errors:
        print(f"  error: {error}", file=sys.stderr)
    if not report.rewritten:
        print("note: the spool file could not be rewritten now (it needs about twice its size free, and "
              "no process holding its write lock for long): fragments of the erased rows may stay in "
              "unused space inside its pages until they are reused; purge again when there is room")
    if not report.wal_truncated:
        print("note: another process was reading the spool, so its write-ahead log still holds older "
              "page images; they are overwritten by the next checkpoint (or purge again once it stops)")
