"""Find and read backup files, and list sessions from the spool and the backups alike.

Support staff see a session from two sides: the spool (the truth while its turns are on this
box) and the JSON backups (what outlives the spool and travels between boxes). Both become the
same records here (``SessionRecord`` and ``Turn``), so every ``backups`` command reads alike.
Checking files against the spool is ``services.backup_verify``.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from voicelog.services.backup._writer import (BACKUP_FORMAT, BACKUP_VERSION, BackupWriter, backup_file_name,
                             backup_files, iso_to_ms)
from voicelog.services.domain._models import ChatType, SessionRecord, Turn, TurnStatus
from voicelog.services.spool._spool import Spool

# Package data, so an installed wheel validates against the same schema the docs describe.
SCHEMA_PATH = importlib.resources.files("voicelog.services.backup") / "schemas" / "backup.schema.json"
STATUSES = tuple(status.value for status in TurnStatus)
SESSION_COLUMNS = ("s.session_id, s.mac, s.mac_valid, s.mac_source, s.started_ms, s.ended_ms,"
                    " s.end_reason, s.owner, s.agent_id, s.skipped, s.last_wire_time")


class BackupError(ValueError):
    """A backup file cannot be used; the message says precisely what is wrong with it."""


@dataclass(frozen=True)
class Backup:
    """One backup file read into records."""

    path: Path
    session: SessionRecord
    turns: tuple[Turn, ...]
    written_ms: int


@dataclass(frozen=True)
class SessionView:
    """A session, its turn counts per status and (when loaded whole) its turns."""

    session: SessionRecord
    counts: dict[str, int]
    source: str  # "spool" or "backup": where this view was read from
    backup_path: Path | None = None
    turns: tuple[Turn, ...] = ()


@dataclass(frozen=True)
class SessionFilter:
    """Which sessions a command is about; an empty field does not filter."""

    session_ids: frozenset[str] = frozenset()
    macs: frozenset[str] = frozenset()
    since_ms: int | None = None
    until_ms: int | None = None  # exclusive
    statuses: frozenset[str] = frozenset()  # sessions having at least one turn in one of these

    def matches(self, session: SessionRecord, counts: Mapping[str, int]) -> bool:
        """Whether a session (with its status counts) passes this filter."""
        if self.session_ids and session.session_id not in self.session_ids:
            return False
        if self.macs and session.mac not in self.macs:
            return False
        if self.since_ms is not None and session.started_ms < self.since_ms:
            return False
        if self.until_ms is not None and session.started_ms >= self.until_ms:
            return False
        return not self.statuses or any(counts.get(s, 0) for s in self.statuses)


def status_counts(turns: Iterable[Turn]) -> dict[str, int]:
    """Turns per status value, only statuses that occur."""
    counts: dict[str, int] = {}
    for turn in turns:
        counts[turn.status.value] = counts.get(turn.status.value, 0) + 1
    return counts


# --- times -----------------------------------------------------------------------------------

# --- backup files ----------------------------------------------------------------------------

@functools.cache
def backup_validator() -> Draft202012Validator:
    """The validator for the backup schema shipped in ``services/schemas/``."""
    try:
        schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BackupError(f"cannot read the backup schema {SCHEMA_PATH}: {exc.strerror}") from exc
    return Draft202012Validator(schema)


def load_document(path: Path) -> dict[str, Any]:
    """The JSON object in a backup file; BackupError says where and how it is broken."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BackupError(f"cannot read: {exc.strerror}") from exc
    if not data.strip():
        raise BackupError(f"empty file ({len(data)} bytes)")
    try:
        text = data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as exc:
        raise BackupError(f"not UTF-8 text (byte {exc.start})") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        # Every backup ends with its closing brace; one that does not was cut short.
        if exc.pos >= len(text.rstrip()) or not text.rstrip().endswith("}"):
            lines = text.count("\n") + 1
            raise BackupError(f"truncated: the file ends mid-document after {len(data)} bytes "
                              f"(line {lines})") from None
        raise BackupError(f"not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(document, dict):
        raise BackupError(f"not a backup: the JSON is a {type(document).__name__}, not an object")
    return document


def schema_problems(document: dict[str, Any], limit: int = 5) -> list[str]:
    """What in a document breaks the backup schema, as ``where: what`` lines."""
    if document.get("format") != BACKUP_FORMAT:
        return [f"format: {document.get('format')!r} is not {BACKUP_FORMAT!r}; not a voicelog backup"]
    if document.get("version") != BACKUP_VERSION:
        return [f"version: {document.get('version')!r} is not known to this voicelog "
                f"(it reads version {BACKUP_VERSION})"]
    errors = sorted(backup_validator().iter_errors(document), key=lambda e: list(map(str, e.path)))
    lines = [f"{_json_path(e.path)}: {e.message[:200]}" for e in errors[:limit]]
    if len(errors) > limit:
        lines.append(f"... and {len(errors) - limit} more schema errors")
    return lines


def _json_path(path: Iterable[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(document)"


def read_backup(path: Path) -> Backup:
    """Read and validate one backup file into records; BackupError says what is wrong."""
    document = load_document(path)
    problems = schema_problems(document)
    if problems:
        raise BackupError("does not match the backup schema: " + "; ".join(problems))
    try:
        return document_records(path, document)
    except ValueError as exc:
        raise BackupError(f"unreadable time: {exc}") from None


def document_records(path: Path, document: dict[str, Any]) -> Backup:
    """Records from a schema-valid backup document."""
    session_id = document["session_id"]
    session = SessionRecord(session_id, document["mac"], document["mac_valid"],
                            document["mac_source"], document["started_ms"], document["ended_ms"],
                            document["end_reason"], None, document["agent_id"],
                            document["skipped_empty_turns"], 0)
    turns = tuple(
        Turn(session_id, t["seq"], ChatType(t["chat_type"]), t["content"], t["report_time_ms"],
             iso_to_ms(t["captured_at"]) or 0, t["interrupted"], TurnStatus(t["status"]),
             t["attempts"], t["last_error"], 0, None, iso_to_ms(t["delivered_at"]))
        for t in document["turns"])
    return Backup(path, session, turns, iso_to_ms(document["written_at"]) or 0)


# --- the catalog -----------------------------------------------------------------------------

@dataclass
class Catalog:
    """Sessions on this box: the spool (may be absent) and the backup folder."""

    spool: Spool | None
    backup_dir: Path
    unreadable: list[tuple[Path, str]] = field(default_factory=list)

    def path_for(self, session: SessionRecord) -> Path:
        """Where this box keeps (or would keep) the session's backup."""
        return BackupWriter(self.backup_dir).path_for(session)

    def summaries(self, wanted: SessionFilter) -> list[SessionView]:
        """Sessions passing the filter: spool sessions first-class, then backup-only ones."""
        found = list(self._spool_summaries(wanted))
        known = self.spool_session_ids()
        # Files of spool sessions are never parsed here: the spool is the fresher truth.
        for backup in self.backups(wanted, skip_names={backup_file_name(i) for i in known}):
            if backup.session.session_id in known:
                continue
            counts = status_counts(backup.turns)
            if wanted.matches(backup.session, counts):
                found.append(SessionView(backup.session, counts, "backup", backup.path))
        found.sort(key=lambda s: (s.session.started_ms, s.session.session_id))
        return found

    def backups(self, wanted: SessionFilter | None = None,
                skip_names: set[str] = frozenset()) -> Iterator[Backup]:
        """Readable backups in the filter's date range; unreadable ones are noted, not raised."""
        wanted = wanted or SessionFilter()
        self.unreadable.clear()
        for path in backup_files(self.backup_dir, since_ms=wanted.since_ms, until_ms=wanted.until_ms):
            if path.name in skip_names:
                continue
            try:
                yield read_backup(path)
            except BackupError as exc:
                self.unreadable.append((path, str(exc)))

    def spool_session_ids(self) -> set[str]:
        """Ids of every session in the spool."""
        if self.spool is None:
            return set()
        return {row[0] for row in self.spool.execute_read("SELECT session_id FROM sessions")}

    def _spool_summaries(self, wanted: SessionFilter) -> Iterator[SessionView]:
        if self.spool is None:
            return
        where, params = _where(wanted)
        having = ""
        if wanted.statuses:
            having = "HAVING " + " OR ".join("SUM(t.status=?)>0" for _ in wanted.statuses)
            params += sorted(wanted.statuses)
        counts = ", ".join(f"COALESCE(SUM(t.status='{s}'),0)" for s in STATUSES)
        rows = self.spool.execute_read(
            f"SELECT {SESSION_COLUMNS}, {counts} FROM sessions s LEFT JOIN turns t"
            f" ON t.session_id=s.session_id {where} GROUP BY s.session_id {having}"
            " ORDER BY s.started_ms, s.session_id", params)
        for row in rows:
            session = session_from_row(row[:11])
            counts_by_status = {s: n for s, n in zip(STATUSES, row[11:]) if n}
            yield SessionView(session, counts_by_status, "spool", self._existing(session))

    def _existing(self, session: SessionRecord) -> Path | None:
        path = self.path_for(session)
        return path if path.exists() else None

    def load(self, ref: str) -> SessionView:
        """A session by id (or unique id prefix), else by backup file path; KeyError if none."""
        if self.spool is not None:
            session_id = self.resolve_id(ref)
            session = self.spool.session(session_id) if session_id else None
            if session is not None:
                turns = tuple(self.spool.turns(session.session_id))
                return SessionView(session, status_counts(turns), "spool", self._existing(session), turns)
        path = Path(ref) if os.path.isfile(ref) else self.find_file(ref)
        if path is None:
            raise KeyError(f"no session {ref!r} in the spool or in {self.backup_dir}")
        backup = read_backup(path)
        return SessionView(backup.session, status_counts(backup.turns), "backup", path, backup.turns)

    def resolve_id(self, ref: str) -> str | None:
        """The session id ``ref`` names exactly or as a unique prefix; ValueError if ambiguous."""
        if self.spool is None:
            return None
        escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self.spool.execute_read("SELECT session_id FROM sessions WHERE session_id LIKE ?"
                                       " ESCAPE '\\' ORDER BY session_id LIMIT 6", (escaped + "%",))
        ids = [row[0] for row in rows]
        if ref in ids or len(ids) <= 1:
            return ref if ref in ids else (ids[0] if ids else None)
        raise ValueError(f"{ref!r} matches several sessions: {', '.join(ids[:5])}; give more of the id")

    def find_file(self, session_id: str) -> Path | None:
        """The backup file of a session id, looked up by its file name in any day folder."""
        name = backup_file_name(session_id)
        matches = sorted(Path(self.backup_dir).glob(f"*/{name}")) if "/" not in session_id else []
        return matches[-1] if matches else None


def _where(wanted: SessionFilter) -> tuple[str, list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    for column, values in (("s.session_id", wanted.session_ids), ("s.mac", wanted.macs)):
        if values:
            clauses.append(f"{column} IN ({','.join('?' * len(values))})")
            params += sorted(values)
    if wanted.since_ms is not None:
        clauses.append("s.started_ms >= ?")
        params.append(wanted.since_ms)
    if wanted.until_ms is not None:
        clauses.append("s.started_ms < ?")
        params.append(wanted.until_ms)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params


def session_from_row(row: tuple) -> SessionRecord:
    """A SessionRecord from the columns of ``SESSION_COLUMNS`` order."""
    (session_id, mac, mac_valid, mac_source, started_ms, ended_ms, end_reason, owner, agent_id,
     skipped, last_wire_time) = row
    return SessionRecord(session_id, mac, bool(mac_valid), mac_source, started_ms, ended_ms,
                         end_reason, owner, agent_id, skipped, last_wire_time)
