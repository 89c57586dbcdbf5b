"""``voicelog top``: one frame of the box, drawn for a person (refreshed in place by rich Live)."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Group
from rich.table import Table
from rich.text import Text

from voicelog.cli.views.words import age, mib, plural
from voicelog.services.ops import BoxFrame

MANAGER_STYLE = {"ok": "green", "down": "bold red", "secret refused": "bold red", "not configured": "yellow",
                 "unknown": "yellow"}


def top_view(frame: BoxFrame, *, node: str, every: float | None, manager_url: str) -> Group:
    """The whole frame: a heading, then one line per figure."""
    now = frame.now
    source = (f"daemon {now.where}" if now.source == "daemon"
              else f"spool {now.where} (no daemon answered)")
    clock = datetime.fromtimestamp(now.at_ms / 1000, UTC).strftime("%H:%M:%S UTC")
    refresh = f"  (every {every:g} s; Ctrl-C quits)" if every else ""
    heading = Text(f"voicelog top - {node} - {clock}{refresh}\n", style="bold")
    heading.append(f"read from {source}", style="dim")
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for label, value in _rows(frame, manager_url):
        grid.add_row(label, value)
    return Group(heading, grid)


def _rows(frame: BoxFrame, manager_url: str) -> list[tuple[str, Text | str]]:
    now = frame.now
    backlog = now.backlog
    parked = f"parked {backlog.get('parked', 0)}"
    if backlog.get("parked"):
        parked += f" ({plural(now.parked_devices, 'device')})"
    rows: list[tuple[str, Text | str]] = [
        ("live sessions", str(now.sessions_active)),
        ("captured", f"{_rate(frame.captured_per_s)}  (total {now.captured_total:,.0f})"),
        ("delivered", f"{_rate(frame.delivered_per_s)}  (total {now.delivered_total:,.0f})"),
        ("backlog", f"open {backlog.get('open', 0)}  pending {backlog.get('pending', 0)}  {parked}  "
                    f"dead-letter {backlog.get('dead_letter', 0)}"),
        ("oldest waiting", age(now.oldest_waiting_s)),
        ("Manager", _manager(frame, manager_url)),
        ("spool", _disk(now.spool_bytes, now.spool_max_bytes)),
    ]
    if now.livekit is not None:
        style = "green" if now.livekit == "registered" else "bold red"
        rows.append(("LiveKit", Text(now.livekit + (f": {now.livekit_reason}" if now.livekit_reason else ""),
                                     style=style)))
    rows.append(("memory", now.memory))
    return rows


def _rate(per_second: float | None) -> str:
    return "- turns/s" if per_second is None else f"{per_second:.1f} turns/s"


def _manager(frame: BoxFrame, url: str) -> Text:
    now = frame.now
    text = Text(now.manager, style=MANAGER_STYLE.get(now.manager, ""))
    if frame.manager_latency_s is not None:
        text.append(f", {frame.manager_latency_s * 1000:.0f} ms per request")
    if now.manager not in ("ok", "not configured") and now.manager_reason:
        text.append(f" ({now.manager_reason})", style="red")
    if url:
        text.append(f"  {url}", style="dim")
    return text


def _disk(used: int, cap: int) -> str:
    if not cap:
        return f"{mib(used)} on disk"
    return f"{mib(used)} of {mib(cap)} cap ({used / cap * 100:.1f} %)"
