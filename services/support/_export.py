"""Export sessions for scripts and tickets: JSON in the backup format, and CSV (one row per turn)."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from voicelog.services.backup import iso_ms, session_document
from voicelog.services.domain import METRIC_KEYS, ChatType, TurnStatus, wall_ms
from voicelog.services.support._catalog import SessionView
from voicelog.services.support._verify import VerifyReport

# The measurements (ms) and language close each row before the text; empty when not measured.
CSV_FIELDS = ("session_id", "mac", "session_started_at", "seq", "role", "captured_at",
              "report_time_ms", "interrupted", "status", "attempts", "last_error", "delivered_at",
              "language", *METRIC_KEYS, "content")
# The order statuses are counted in, in ``backups list --json``.
COUNTED_ORDER = (TurnStatus.DELIVERED, TurnStatus.PENDING, TurnStatus.PARKED, TurnStatus.DEAD_LETTER,
                 TurnStatus.OPEN, TurnStatus.SKIPPED)


def summary_json(view: SessionView) -> dict[str, Any]:
    """One session of ``backups list --json``."""
    s = view.session
    return {"session_id": s.session_id, "mac": s.mac, "mac_valid": s.mac_valid,
            "mac_source": s.mac_source, "agent_id": s.agent_id,
            "started_at": iso_ms(s.started_ms), "ended_at": iso_ms(s.ended_ms),
            "end_reason": s.end_reason, "turns": {s.value: view.counts.get(s.value, 0) for s in COUNTED_ORDER},
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
            metrics = dict(turn.meta.metrics) if turn.meta else {}
            writer.writerow({
                **{key: metrics.get(key, "") for key in METRIC_KEYS},
                "language": (turn.meta.language if turn.meta else None) or "",
                "session_id": turn.session_id, "mac": view.session.mac,
                "session_started_at": iso_ms(view.session.started_ms), "seq": turn.seq,
                "role": "user" if turn.chat_type == ChatType.USER else "agent",
                "captured_at": iso_ms(turn.captured_ms), "report_time_ms": turn.report_ms,
                "interrupted": int(turn.interrupted), "status": turn.status.value,
                "attempts": turn.attempts, "last_error": turn.last_error or "",
                "delivered_at": iso_ms(turn.delivered_ms) or "", "content": turn.content})
            rows += 1
    return rows


def verify_json(report: VerifyReport) -> dict[str, Any]:
    """``backups verify --json``."""
    return {"ok": not report.errors, "files": report.files, "sessions": report.sessions,
            "findings": [f.__dict__ for f in report.findings]}


class UnsafeOutput(ValueError):
    """The export target is not a plain place to write a private file (a link, a folder)."""


@contextlib.contextmanager
def private_output(path: Path | None) -> Iterator[IO[str]]:
    """Stdout, or a file only its owner can read, written whole or not at all.

    Exports hold what children said, so the file is private like the backups: it is written as a
    new 0600 file beside the target and renamed over it. An existing file's loose mode, a hard
    link to it, or a half-written export never survive; a symbolic link is refused, never followed.
    """
    if path is None:
        yield sys.stdout
        return
    if path.is_symlink():
        raise UnsafeOutput(f"{path} is a symbolic link; refusing to write through it (give the real path)")
    if path.is_dir():
        raise UnsafeOutput(f"{path} is a folder; give a file name")
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with open(fd, "w", encoding="utf-8", newline="") as handle:
            yield handle
        os.replace(temporary, path)  # replaces a link that appeared meanwhile, never its target
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise

