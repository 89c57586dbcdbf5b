"""A replay as people follow it: the plan, a progress bar (or plain lines when piped), the verdict."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
)
from rich.text import Text

from voicelog.cli.views.sessions import speaker, status_label
from voicelog.cli.views.words import plural
from voicelog.services.domain import TurnStatus
from voicelog.services.support import ReplaySummary, TurnResult, status_counts


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
    rows = f" (as {plural(summary.rows, 'row')}: long turns are split)" \
        if summary.rows and summary.rows != delivered else ""
    console.print(f"[{colour}]delivered {delivered} of {plural(summary.total, 'turn')}[/]{rows}, dead-letter "
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


class CurrentStderr:
    """Whatever ``sys.stderr`` is at the moment: rich's progress swaps in one that prints above the bar."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


