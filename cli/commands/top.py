"""``voicelog top``: a live view of the box, like ``htop`` or ``vector top``."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys

from rich.console import Console
from rich.live import Live

from voicelog.services.config import Settings

DESCRIPTION = """A live view of this box, refreshed in place: live sessions, turns per second captured
and delivered, the backlog by status with the age of the oldest waiting turn, the Manager's state
(ok / down / secret refused) and time per request, parked devices, dead-letter turns, the spool's
size against its cap, and the LiveKit worker (for `voicelog start`). The figures are those of
/metrics: read from the running daemon (http.listen), or from the spool when no daemon answers
(then this process asks the Manager itself, as `doctor` does, at most every 5 s).
Rates need two readings: --once and --json take two, --interval apart, and print one frame."""
EPILOG = """examples:
  voicelog top                      # live, until Ctrl-C
  voicelog top --once               # one frame as text (also what a pipe gets)
  voicelog top --json | jq .backlog # one frame for scripts
exit: 0 (Ctrl-C is the normal way out of the live view)."""


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``top``."""
    top = commands.add_parser("top", help="a live view of the box (sessions, rates, backlog, Manager, disk)",
                              description=DESCRIPTION, epilog=EPILOG, parents=[common],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--once", action="store_true", help="print one frame as text and exit")
    top.add_argument("--json", action="store_true", help="print one frame as JSON and exit")
    top.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                     help="seconds between readings (default 1)")
    top.set_defaults(handler=cmd_top, quiet_logs=True)


def cmd_top(settings: Settings, args: argparse.Namespace) -> int:
    """Show the box: live on a terminal, one frame with --once, --json or in a pipe."""
    if args.interval <= 0:
        print("voicelog: --interval must be more than 0 seconds", file=sys.stderr)
        return 2
    console = Console()
    live = console.is_terminal and not (args.once or args.json)
    try:
        asyncio.run(_live(settings, args.interval, console) if live else
                    _one_frame(settings, args.interval, console, as_json=args.json))
    except KeyboardInterrupt:
        return 0
    return 0


async def _one_frame(settings: Settings, interval: float, console: Console, *, as_json: bool) -> None:
    from voicelog.cli.views.top import top_view
    from voicelog.services.ops import FigureSource, frame

    source = FigureSource(settings)
    try:
        first = await source.read()
        await asyncio.sleep(interval)
        shown = frame(await source.read(), first)
    finally:
        await source.close()
    if as_json:
        print(json.dumps({"node": socket.gethostname(), **shown.to_json()}, ensure_ascii=False))
    else:
        console.print(top_view(shown, node=socket.gethostname(), every=None,
                               manager_url=settings.manager_api.url), highlight=False, soft_wrap=True)


async def _live(settings: Settings, interval: float, console: Console) -> None:
    from voicelog.cli.views.top import top_view
    from voicelog.services.ops import FigureSource, frame

    source = FigureSource(settings)
    node = socket.gethostname()
    try:
        before = await source.read()
        first = top_view(frame(before, None), node=node, every=interval, manager_url=settings.manager_api.url)
        with Live(first, console=console, auto_refresh=False, transient=False) as live:
            while True:
                await asyncio.sleep(interval)
                now = await source.read()
                live.update(top_view(frame(now, before), node=node, every=interval,
                                     manager_url=settings.manager_api.url), refresh=True)
                before = now
    finally:
        await source.close()
