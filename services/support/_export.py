"""Present sessions to people and to scripts: rich tables, conversations, JSON and CSV.

Everything the ``backups`` commands print is shaped here, so the command module stays wiring
and the same view of a session reads the same in ``list``, ``show``, ``export`` and ``replay``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, SpinnerColumn,
                           Task, TaskID, TaskProgressColumn, TextColumn)
from rich.table import Table
from rich.text import Text

from voicelog.services.backup._writer import iso_ms, session_document
from voicelog.services.support._catalog import SessionView, status_counts
from voicelog.services.support._verify import VerifyReport
from voicelog.services.domain._clock import wall_ms
from voicelog.services.domain._models import ChatType, Turn, TurnStatus
from voicelog.services.support._replay import ReplaySummary, TurnResult
from voicelog.services.privacy._retention import PruneReport

COUNTED = ("delivered", "pending", "parked", "dead_letter")
STYLE = {"delivered": "green", "pending": "yellow", "parked": "magenta", "dead_letter": "bold red",
         "open": "cyan", "skipped": "dim"}
CSV_FIELDS = ("session_id", "mac", "session_started_at", "seq", "role", "captured_at",
              "report_time_ms", "interrupted", "status", "attempts", "last_error", "delivered_at",
              "content")


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


# --- machine-readable ----------------------------------------------------------------------------

def summary_json(view: SessionView) -> dict[str, Any]:
    """One session of ``backups list --json``."""
    s = view.session
    return {"session_id": s.session_id, "mac": s.mac, "mac_valid": s.mac_valid,
            "mac_source": s.mac_source, "agent_id": s.agent_id,
            "started_at": iso_ms(s.started_ms), "ended_at": iso_ms(s.ended_ms),
            "end_reason": s.end_reason, "turns": {k: view.counts.get(k, 0) for k in STYLE},
            "source": view.source, "backup_file": str(view.backup_path) if view.backup_path else None}


def session_json(view: SessionView) -> dict[str, Any]:
    """A whole session in the backup format (docs/backup-format.md), plus where it was read."""
    document = session_document(view.session, list(view.turns), wall_ms())
    document["source"] = view.source
    return document


def write_json(views: Iterable[SessionView], out: IO[str]) -> int:
    """An array of sessions in the backup format; returns how many."""
    documents = [session_document(v.session, list(v.turns), wall_ms()) for v in views]
    json.dump(documents, out, ensure_ascii=False, indent=1)
    out.write("\n")
    return len(documents)


def write_csv(views: Iterable[SessionView], out: IO[str]) -> int:
    """One CSV row per turn, with its session's MAC and start; returns how many rows."""
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    rows = 0
    for view in views:
        for turn in view.turns:
            writer.writerow({
                "session_id": turn.session_id, "mac": view.session.mac,
                "session_started_at": iso_ms(view.session.started_ms), "seq": turn.seq,
                "role": "user" if turn.chat_type == ChatType.USER else "agent",
                "captured_at": iso_ms(turn.captured_ms), "report_time_ms": turn.report_ms,
                "interrupted": int(turn.interrupted), "status": turn.status.value,
                "attempts": turn.attempts, "last_error": turn.last_error or "",
                "delivered_at": iso_ms(turn.delivered_ms) or "", "content": turn.content})
            rows += 1
    return rows


# --- for people --------------------------------------------------------------------------------

def list_table(views: list[SessionView]) -> Table:
    """``backups list``: one row per session with its turn counts by status."""
    only_files = any(v.source != "spool" for v in views)
    table = Table(title=f"{len(views)} session(s), times in UTC", title_justify="left", box=None,
                  header_style="bold underline", pad_edge=False,
                  caption="* only in a backup file, not in this box's spool" if only_files else None,
                  caption_justify="left")
    table.add_column("session", overflow="fold")
    for name in ("MAC", "started", "ended"):
        table.add_column(name, no_wrap=True)
    for name in COUNTED:
        table.add_column(status_label(name), justify="right", style=STYLE[name], no_wrap=True)
    for view in views:
        s = view.session
        mac = Text(s.mac, style="" if s.mac_valid else "bold red")
        table.add_row(Text(s.session_id + ("" if view.source == "spool" else " *")), mac,
                      when(s.started_ms)[:16], _ended(s.started_ms, s.ended_ms),
                      *[str(view.counts.get(name, 0)) for name in COUNTED])
    return table


def _ended(started_ms: int, ended_ms: int | None) -> str:
    return "live" if ended_ms is None else _ended_at(started_ms, ended_ms)[:-4]


def _ended_at(started_ms: int, ended_ms: int) -> str:
    """The end time, without the date when the session ended the day it started."""
    return when(ended_ms)[11:] if when(started_ms)[:10] == when(ended_ms)[:10] else when(ended_ms)


def show_session(console: Console, view: SessionView) -> None:
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
    console.print(conversation_table(view.turns))


def conversation_table(turns: Iterable[Turn]) -> Table:
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
        if turn.last_error and turn.status is not TurnStatus.DELIVERED:
            repeated = shown is not None and shown[0] == turn.last_error
            said.append(f"\n↳ same as #{shown[1]}" if repeated else f"\n↳ {turn.last_error}", style="red")
            shown = shown if repeated else (turn.last_error, turn.seq)
        style = STYLE[turn.status.value]
        table.add_row(str(turn.seq), when(turn.captured_ms, clock_only=True), speaker(turn), said,
                      Text(status_label(turn.status), style=style))
    return table


def verify_lines(console: Console, report: VerifyReport) -> None:
    """``backups verify``: each finding on one line, errors first, then a verdict."""
    for finding in sorted(report.findings, key=lambda f: (f.severity != "error", f.where)):
        colour = "red" if finding.severity == "error" else "yellow"
        where = f"session {finding.session_id}" if finding.where == "spool" else finding.where
        console.print(f"[{colour}]{finding.severity.upper()}[/] {escape(where)}: {escape(finding.what)}",
                      highlight=False, soft_wrap=True)
    errors, warnings = len(report.errors), len(report.findings) - len(report.errors)
    verdict = "[green]OK[/]" if not errors else f"[red]{errors} problem(s)[/]"
    console.print(f"checked {report.files} backup file(s) and {report.sessions} session(s): "
                  f"{verdict}, {warnings} warning(s)")


def verify_json(report: VerifyReport) -> dict[str, Any]:
    """``backups verify --json``."""
    return {"ok": not report.errors, "files": report.files, "sessions": report.sessions,
            "findings": [f.__dict__ for f in report.findings]}


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
    console.print(f"{verb} {len(report.removed)} session(s), {report.turns_removed} turn(s) "
                  f"ended before {when(report.cutoff_ms)}; kept {len(report.kept_undelivered)} "
                  "with undelivered turns")


# --- replay ------------------------------------------------------------------------------------

def plan_lines(console: Console, summary: ReplaySummary, *, turns: bool) -> None:
    """What a replay sends: per session, and with ``turns`` every turn (the dry run)."""
    for plan in summary.plans:
        s = plan.session
        mac = f"{s.mac} -> {plan.set_mac}" if plan.set_mac else s.mac
        note = " (imported from " + str(plan.backup.path) + ")" if plan.backup else ""
        statuses = ", ".join(f"{n} {status_label(k)}" for k, n in sorted(status_counts(plan.turns).items()))
        console.print(f"{s.session_id} [{mac}]: {len(plan.turns)} turn(s) ({statuses}){note}",
                      highlight=False, markup=False, soft_wrap=True)
        if not s.mac_valid and not plan.set_mac:
            console.print("  [yellow]no valid MAC: these turns will park; add --mac[/]")
        for turn in plan.turns if turns else ():
            preview = turn.content if len(turn.content) <= 60 else turn.content[:59] + "…"
            console.print(f"  #{turn.seq} {speaker(turn)} {status_label(turn.status)}: {preview}",
                          highlight=False, markup=False, soft_wrap=True)


class PlainReplayProgress:
    """Replay progress as plain lines (a pipe, a log): failures as they happen, totals now and then."""

    def __init__(self, console: Console, every: float = 2.0) -> None:
        self.console, self.every = console, every
        self.done = self.total = 0
        self._last_line = 0.0
        self._started = time.monotonic()

    def started(self, summary: ReplaySummary) -> None:
        self.total = summary.total
        plan_lines(self.console, summary, turns=summary.mode == "dry-run")
        self.console.print(_intro(summary), highlight=False)
        self._started = self._last_line = time.monotonic()

    def turn_finished(self, result: TurnResult) -> None:
        self.done += 1
        if result.status is not TurnStatus.DELIVERED:
            self.console.print(_failure(result), highlight=False, markup=False, soft_wrap=True)
        if time.monotonic() - self._last_line >= self.every or self.done == self.total:
            self._last_line = time.monotonic()
            rate = self.done / max(1e-6, time.monotonic() - self._started)
            self.console.print(f"progress: {self.done}/{self.total} turns, {rate:.1f} turns/s", highlight=False)

    def note(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False)

    def close(self) -> None:
        """Nothing to tidy up for plain lines."""


class RichReplayProgress(PlainReplayProgress):
    """Replay progress on a terminal: a bar with rate and ETA; failures printed above it."""

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.bar = Progress(SpinnerColumn(), TextColumn("[bold]replay"), BarColumn(),
                            MofNCompleteColumn(), TextColumn("turns"), TaskProgressColumn(),
                            _RateColumn(), console=console, transient=False)
        self._task: TaskID | None = None

    def started(self, summary: ReplaySummary) -> None:
        super().started(summary)
        if summary.mode in ("here", "daemon"):
            self.bar.start()
            self._task = self.bar.add_task("replay", total=summary.total)

    def turn_finished(self, result: TurnResult) -> None:
        if result.status is not TurnStatus.DELIVERED:
            self.bar.console.print(_failure(result), highlight=False, markup=False, soft_wrap=True)
        if self._task is not None:
            self.bar.advance(self._task)

    def note(self, text: str) -> None:
        self.bar.console.print(text, highlight=False, markup=False)

    def close(self) -> None:
        self.bar.stop()


class _RateColumn(ProgressColumn):
    """Turns per second and time left, averaged since the start (deliveries come in bursts)."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        if not task.completed or elapsed <= 0:
            return Text("- turns/s  ETA -:--:--", style="cyan")
        rate = task.completed / elapsed
        left = int(max(0.0, (task.total or 0) - task.completed) / rate)
        return Text(f"{rate:.1f} turns/s  ETA {left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}",
                    style="cyan")


def _intro(summary: ReplaySummary) -> str:
    sessions = len(summary.plans)
    if summary.mode == "dry-run":
        return f"dry run: would send {summary.total} turn(s) of {sessions} session(s); nothing sent"
    if summary.mode == "nothing":
        return "nothing to replay: no selected turn is waiting (delivered turns need --force)"
    who = "delivering from this process" if summary.mode == "here" else "the running daemon delivers"
    imported = f", imported {summary.imported_turns} turn(s)" if summary.imported_turns else ""
    return f"replaying {summary.total} turn(s) of {sessions} session(s): {who}{imported}"


def _failure(result: TurnResult) -> str:
    return f"{status_label(result.status)}: {result.session_id}#{result.seq}: {result.last_error or '-'}"


def replay_verdict(console: Console, summary: ReplaySummary) -> None:
    """The closing summary of a replay: counts, why it stopped, and what to do next."""
    if summary.mode in ("dry-run", "nothing"):
        return
    delivered = summary.count(TurnStatus.DELIVERED)
    failed = summary.count(TurnStatus.DEAD_LETTER, TurnStatus.PARKED)
    waiting = summary.total - delivered - failed
    colour = "green" if summary.ok else "red"
    console.print(f"[{colour}]delivered {delivered} of {summary.total}[/], dead-letter "
                  f"{summary.count(TurnStatus.DEAD_LETTER)}, parked {summary.count(TurnStatus.PARKED)}, "
                  f"not yet sent {waiting} in {summary.seconds:.1f}s", highlight=False)
    if summary.stopped:
        console.print(f"[yellow]stopped early: {escape(summary.stopped)}[/]", highlight=False)
    if waiting:
        who = "the daemon keeps delivering them" if summary.mode == "daemon" else \
            "run the same command again to send the rest (without --force: they are pending now)"
        console.print(f"{waiting} turn(s) are pending: {who}", highlight=False)
    for result in sorted(summary.results.values(), key=lambda r: (r.session_id, r.seq)):
        if result.status is not TurnStatus.DELIVERED and result.last_error:
            console.print("  " + _failure(result), highlight=False, markup=False, soft_wrap=True)


# --- where output goes ------------------------------------------------------------------------

class CurrentStderr:
    """Whatever ``sys.stderr`` is at the moment: rich's progress swaps in one that prints above the bar."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


@contextlib.contextmanager
def private_output(path: Path | None) -> Iterator[IO[str]]:
    """Stdout, or a new file only its owner can read."""
    if path is None:
        yield sys.stdout
        return
    # Exports hold what children said: private to the user, like the backups themselves.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", encoding="utf-8", newline="") as handle:
        yield handle
