"""What people read about a device's conversation memory."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from voicelog.cli.views.sessions import when
from voicelog.services.memory import EraseReport, Preload

WHERE = {"redis": "Redis (shared by the fleet) and this host's spool", "local": "this host's spool",
         "none": "no store"}


def show_memory(console: Console, mac: str, preload: Preload) -> None:
    """The turns the device's next session would start with, oldest first, and where they came from."""
    console.print(f"Memory of [bold]{mac}[/]: {len(preload.turns)} turn(s), read from {WHERE[preload.store]} "
                  f"in {preload.elapsed_ms:.1f} ms")
    if preload.fell_back:
        console.print(f"[yellow]Redis was not used ({escape(preload.reason or 'failed')}): "
                      "this is what a session on THIS host would start with[/]")
    if not preload.turns:
        console.print("nothing to remember: the next session starts fresh")
        return
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("who", no_wrap=True)
    table.add_column("said (as the child heard it)")
    for remembered in preload.turns:
        who = "child" if remembered.role == "user" else "toy"
        said = escape(remembered.text) + (" [dim]" + escape("[interrupted]") + "[/]" if remembered.turn.interrupted else "")
        table.add_row(when(remembered.turn.created_ms), who, said)
    console.print(table)


def forget_lines(console: Console, mac: str, report: EraseReport) -> None:
    """What a forget did in each store."""
    console.print(f"forgot {mac}: its next session starts fresh; its turns stay in the spool and backups "
                  "until delivered and retained (`backups purge` erases everything)")
    console.print("  this host's spool: cut-off set")
    if report.redis == "erased":
        console.print(f"  Redis: erased ({report.redis_turns} turn(s))")
    elif report.redis == "not used":
        console.print("  Redis: not used (memory.backend: local)")
    else:
        console.print(f"  [red]Redis: unreachable ({escape(report.error or '')})[/]; the daemon applies the "
                      "forget when Redis is back; run this again to confirm")
