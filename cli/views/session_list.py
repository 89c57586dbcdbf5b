"""``backups list`` for people and for pipes.

In a pipe every session is one line of space-free fields with its full id, so ``awk``, ``cut``
and ``grep`` read it; the count and where the data was read go to stderr. On a terminal the
table fits the width without ever wrapping an id: when the full ids do not fit, each is cut to
the shortest prefix (8 characters at least) that names one session, which ``backups show``
accepts.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from rich.table import Table
from rich.text import Text

from voicelog.cli.views.sessions import COUNTED, STYLE, status_label, when
from voicelog.cli.views.words import plural
from voicelog.services.support import SessionView

MIN_PREFIX = 8
PLAIN_HEADER = ("session", "mac", "started", "ended", "delivered", "pending", "parked", "dead-letter",
                "source")
# Column widths of the terminal table besides the id: MAC, started, ended and the four counts.
_FULL_WIDTHS = (17, 16, 5, 9, 7, 6, 11)
_COMPACT_WIDTHS = (17, 11, 5, 9, 7, 6, 6)  # started without the year; "dead-/letter" on two lines
_GAP = 2


_MARKS = {"spool": "", "backup": " *", "orphan": " !"}  # after an id: where it was found


def list_title(views: list[SessionView], where: str) -> str:
    """``3 sessions, times in UTC; read from ...``."""
    return f"{plural(len(views), 'session')}, times in UTC; read from {where}"


def plain_lines(views: list[SessionView]) -> list[str]:
    """The list for a pipe: a header, then one line per session, columns aligned, never wrapped."""
    rows = [PLAIN_HEADER] + [_plain_row(view) for view in views]
    widths = [max(len(row[i]) for row in rows) for i in range(len(PLAIN_HEADER))]
    return ["  ".join(cell.ljust(w) if i < 4 or i == 8 else cell.rjust(w)
                      for i, (cell, w) in enumerate(zip(row, widths))).rstrip() for row in rows]


def _plain_row(view: SessionView) -> tuple[str, ...]:
    s = view.session
    return (s.session_id, s.mac, _iso(s.started_ms), "live" if s.ended_ms is None else _iso(s.ended_ms),
            *[str(view.counts.get(name, 0)) for name in COUNTED], view.source)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def unique_prefix_length(shown: Iterable[str], known: Iterable[str]) -> int:
    """The shortest length (at least MIN_PREFIX) at which each shown id differs from every other id."""
    shown = set(shown)
    ids = sorted(set(known) | shown)
    length = MIN_PREFIX
    for index, session_id in enumerate(ids):
        if session_id not in shown:
            continue
        for other in ids[max(0, index - 1):index] + ids[index + 1:index + 2]:
            common = next((i for i, (a, b) in enumerate(zip(session_id, other)) if a != b),
                          min(len(session_id), len(other)))
            length = max(length, min(common + 1, len(session_id)))
    return length


def terminal_table(views: list[SessionView], width: int, known_ids: Iterable[str], title: str) -> Table:
    """The list on a terminal ``width`` columns wide: full ids when they fit, else unique prefixes."""
    id_width = max((len(v.session.session_id) + (0 if v.source == "spool" else 2) for v in views), default=7)
    compact = id_width + sum(_FULL_WIDTHS) + _GAP * len(_FULL_WIDTHS) > width
    cut = unique_prefix_length((v.session.session_id for v in views), known_ids) if compact else 0
    captions = [note for source, note in (("backup", "* only in a backup file, not in this box's spool"),
                                          ("orphan", "! turns with no session row (left by an older voicelog): "
                                                     "`voicelog ship --once` or the next start repairs them"))
                if any(v.source == source for v in views)]
    if compact:
        captions.append("ids cut to a unique start; `backups show` takes it; pipe the list for whole ids")
    table = Table(title=title, title_justify="left", box=None, header_style="bold underline",
                  pad_edge=False, caption="\n".join(captions) or None, caption_justify="left",
                  padding=(0, 1, 0, 0) if compact else (0, 1))  # one space between columns when narrow
    shown_width = min(id_width, cut + 2) if compact else id_width
    table.add_column("session", no_wrap=True, min_width=shown_width)
    for name in ("MAC", "started", "ended"):
        table.add_column(name, no_wrap=True)
    for name in COUNTED:
        header = "dead-\nletter" if compact and name == "dead_letter" else status_label(name)
        table.add_column(header, justify="right", style=STYLE[name], no_wrap=True)
    for view in views:
        table.add_row(*_terminal_row(view, cut))
    return table


def _terminal_row(view: SessionView, cut: int) -> list[Text | str]:
    s = view.session
    shown = s.session_id[:cut] if cut else s.session_id
    started = when(s.started_ms)[:16]
    return [Text(shown + _MARKS[view.source]),
            Text(s.mac, style="" if s.mac_valid else "bold red"),
            started[5:] if cut else started, _ended(s.started_ms, s.ended_ms),
            *[str(view.counts.get(name, 0)) for name in COUNTED]]


def _ended(started_ms: int, ended_ms: int | None) -> str:
    if ended_ms is None:
        return "live"
    same_day = when(started_ms)[:10] == when(ended_ms)[:10]
    return when(ended_ms)[11:16] if same_day else when(ended_ms)[:16]
