"""Find and read backup files: the one reader, and the one error type it raises.

``read_backup`` loads a file, checks every field against the published format
(schemas/backup.schema.json, checked by hand here because a schema validator costs ~25x more
and recovery reads every file at start) and returns records. Errors form one small hierarchy:

    BackupError        the file cannot be used; the message says precisely why
      BackupTooNew     written by a newer voicelog: not damaged, just not ours to read or move
"""

from __future__ import annotations

import errno
import functools
import json
import math
import os
import re
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from voicelog.services.backup._format import (
    BACKUP_FORMAT,
    BACKUP_VERSION,
    READABLE_VERSIONS,
    Backup,
    document_records,
)
from voicelog.services.domain import METRIC_KEYS, TurnStatus

_DAY_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MAC = re.compile(r"^([0-9a-f]{2}(:[0-9a-f]{2}){5}|unknown)$")
_TURN_ID = re.compile(r"#[0-9]+$")
_MAX_INT = 2**63 - 1  # what SQLite can store
# No real session comes near this: 10,000 turns of the 4 Mi-character cap would, but is refused.
MAX_BACKUP_BYTES = 512 * 1024 * 1024
_BACKUP_START = '{"format"'
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: the last time a date can show
_STATUSES = tuple(status.value for status in TurnStatus)
_MAC_SOURCES = ("attribute", "identity", "room_name", "none", "replay")
_NULL = type(None)


class BackupError(ValueError):
    """A backup file cannot be used; the message says precisely what is wrong with it."""


class BackupTooNew(BackupError):
    """A backup written by a newer voicelog: not damaged, just not ours to read or move."""


def load_document(path: Path) -> dict[str, Any]:
    """The JSON object in a backup file; BackupError says where and how it is broken."""
    data = _read_regular_file(path)
    if not data.strip():
        raise BackupError(f"empty file ({len(data)} bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BackupError(f"not UTF-8 text (byte {exc.start})") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        # Every backup ends with its closing brace; one that does not was cut short. Only a file
        # that starts like a backup is described by its size and lines: of any other file (one
        # handed to `show`, say) nothing is told beyond where its first byte of non-JSON is.
        cut_short = exc.pos >= len(text.rstrip()) or not text.rstrip().endswith("}")
        if cut_short and not text.lstrip().startswith(_BACKUP_START):
            raise BackupError("not a backup: not a JSON document in the backup format") from None
        if cut_short:
            lines = text.count("\n") + 1
            raise BackupError(f"truncated: the file ends mid-document after {len(data)} bytes "
                              f"(line {lines})") from None
        raise BackupError(f"not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise BackupError("not a backup: the JSON is nested too deeply to read") from None
    if not isinstance(document, dict):
        raise BackupError(f"not a backup: the JSON is a {type(document).__name__}, not an object")
    _refuse_lone_surrogates(text, document)
    return document


def _read_regular_file(path: Path) -> bytes:
    """A backup's bytes: never through a symbolic link, never a device, FIFO or huge file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BackupError("a symbolic link: backups are never read through links") from None
        raise BackupError(f"cannot read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise BackupError("not a regular file: not a backup")
        if info.st_size > MAX_BACKUP_BYTES:
            raise BackupError(f"larger than {MAX_BACKUP_BYTES // 1024 // 1024} MiB: not a backup")
        try:
            return handle.read(MAX_BACKUP_BYTES + 1)
        except OSError as exc:
            raise BackupError(f"cannot read: {exc.strerror}") from None


def _refuse_lone_surrogates(text: str, document: dict[str, Any]) -> None:
    """JSON escapes can spell a lone surrogate: text no terminal, file or database can take."""
    if not _SURROGATE_ESCAPE.search(text):
        return  # our writer never escapes; valid pairs elsewhere are plain UTF-8
    try:
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BackupError("holds text that is not valid Unicode (a lone surrogate): not a backup "
                          "voicelog wrote") from None


def problems(document: dict[str, Any], limit: int = 5) -> list[str]:
    """What in a document breaks the backup format, as ``where: what`` lines (empty: none)."""
    if document.get("format") != BACKUP_FORMAT:
        return [f"format: {document.get('format')!r} is not {BACKUP_FORMAT!r}; not a voicelog backup"]
    version = document.get("version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        known = ", ".join(map(str, READABLE_VERSIONS))
        return [f"version: {version!r} is not known to this voicelog (it reads versions {known})"]
    found = list(_session_problems(document))
    turns = document.get("turns")
    if isinstance(turns, list):
        for index, turn in enumerate(turns):
            found += _turn_problems(turn, f"turns[{index}]", version)
            if len(found) > limit:
                break
    if len(found) > limit:
        found = found[:limit] + ["... and more"]
    return found


def _session_problems(document: dict[str, Any]) -> Iterator[str]:
    yield from _fields(document, "", _session_checks())


def _turn_problems(turn: Any, where: str, version: int) -> list[str]:
    if not isinstance(turn, dict):
        return [f"{where}: is not an object"]
    checks, optional_v2 = _turn_checks()
    # Version 2 turns may also say what LiveKit measured and the language (both optional).
    return list(_fields(turn, f"{where}.", checks, optional_v2 if version >= 2 else None))


@functools.cache
def _session_checks() -> dict[str, Any]:
    # Built once: every backup file is checked when a process opens the spool alone.
    return {"format": _any, "version": _any, "turns": _array,
            "session_id": _string(1, 50), "mac": _matching(_MAC), "mac_valid": _boolean,
            "mac_source": _one_of(_MAC_SOURCES), "agent_id": _nullable(_string()),
            "started_at": _time, "started_ms": _ms, "ended_at": _nullable(_time),
            "ended_ms": _nullable(_ms), "end_reason": _nullable(_string()),
            "skipped_empty_turns": _count, "written_at": _time}


@functools.cache
def _turn_checks() -> tuple[dict[str, Any], dict[str, Any]]:
    # Built once, not per turn: a 30-turn file used to build ~450 check closures.
    return ({"id": _matching(_TURN_ID), "seq": _integer(1, _MAX_INT), "chat_type": _one_of((1, 2)),
             "role": _one_of(("user", "agent")), "content": _string(), "report_time_ms": _ms,
             "captured_at": _time, "interrupted": _boolean, "status": _one_of(_STATUSES),
             "attempts": _count, "last_error": _nullable(_string()), "delivered_at": _nullable(_time)},
            {"language": _nullable(_string(1, 35)), "metrics": _metrics})


def _fields(entry: dict[str, Any], prefix: str, checks: dict[str, Any],
            optional: dict[str, Any] | None = None) -> Iterator[str]:
    optional = optional or {}
    for key in sorted(set(entry) - set(checks) - set(optional)):
        yield f"{prefix}{key if key.isprintable() and key.isascii() else repr(key)}: unexpected field"
    for key in sorted(set(entry) & set(optional)):
        why = optional[key](entry[key])
        if why:
            yield f"{prefix}{key}: {why}"
    for key, check in checks.items():
        if key not in entry:
            yield f"{prefix[:-1] or '(document)'}: {key!r} is a required field"
            continue
        why = check(entry[key])
        if why:
            yield f"{prefix}{key}: {why}"


# --- field checks: each returns None when the value is fine, else why not ------------------------

def _any(value: Any) -> str | None:
    return None


def _array(value: Any) -> str | None:
    return None if isinstance(value, list) else f"{_short(value)} is not an array"


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"{_short(value)} is not a boolean"


def _integer(low: int, high: int) -> Any:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{_short(value)} is not an integer"
        if not low <= value <= high:
            return f"{_short(value)} is outside {low}..{high}"
        return None
    return check


_count = _integer(0, _MAX_INT)
_ms = _integer(0, _MAX_MS)


def _string(low: int = 0, high: int | None = None) -> Any:
    def check(value: Any) -> str | None:
        if not isinstance(value, str):
            return f"{_short(value)} is not a string"
        if len(value) < low or (high is not None and len(value) > high):
            return f"{_short(value)} is not {low}..{high} characters long"
        return None
    return check


def _matching(pattern: re.Pattern[str]) -> Any:
    def check(value: Any) -> str | None:
        if not isinstance(value, str):
            return f"{_short(value)} is not a string"
        return None if pattern.search(value) else f"{_short(value)} does not match {pattern.pattern!r}"
    return check


def _one_of(allowed: tuple[Any, ...]) -> Any:
    booleans = any(isinstance(a, bool) for a in allowed)  # True == 1: a boolean is never a 1 here

    def check(value: Any) -> str | None:
        ok = value in allowed and isinstance(value, bool) == booleans
        return None if ok else f"{_short(value)} is not one of {', '.join(map(repr, allowed))}"
    return check


def _metrics(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"{_short(value)} is not an object"
    for key, number in value.items():
        if key not in METRIC_KEYS:
            return f"{_short(key)} is not a known measurement ({', '.join(METRIC_KEYS)})"
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
            return f"{key}: {_short(number)} is not a finite number"
    return None


def _nullable(check: Any) -> Any:
    return lambda value: None if value is None else check(value)


def _time(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"{_short(value)} is not a string"
    try:
        when = datetime.fromisoformat(value)
        (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    except (ValueError, OverflowError, OSError):
        return f"{_short(value)} is not an ISO 8601 time"
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- reading files -------------------------------------------------------------------------------

def read_backup(path: Path) -> Backup:
    """Read and check one backup file into records; BackupError (or BackupTooNew) says why not."""
    return document_records(path, read_document(path))


def read_document(path: Path) -> dict[str, Any]:
    """Read and check one backup file, as its JSON document; BackupError says why not."""
    document = load_document(path)
    version = document.get("version")
    newer = isinstance(version, int) and not isinstance(version, bool) and version > max(READABLE_VERSIONS)
    if newer and document.get("format") == BACKUP_FORMAT:
        raise BackupTooNew(f"backup version {version} is newer than this voicelog's {BACKUP_VERSION}")
    found = problems(document)
    if found:
        raise BackupError("does not match the backup schema: " + "; ".join(found))
    return document


def backup_files(backup_dir: str | os.PathLike[str], *, since_ms: int | None = None,
                 until_ms: int | None = None) -> list[Path]:
    """Session backup files (``*.json`` in day folders only), skipping days outside the range.

    Symbolic links are never backups (``linked_files`` lists them, for verify and recovery).
    """
    return [f for f in _candidates(backup_dir, since_ms, until_ms) if not f.is_symlink()]


def linked_files(backup_dir: str | os.PathLike[str]) -> list[Path]:
    """Symbolic links where backups live: refused, never followed."""
    return [f for f in _candidates(backup_dir, None, None) if f.is_symlink()]


def _candidates(backup_dir: str | os.PathLike[str], since_ms: int | None, until_ms: int | None) -> list[Path]:
    first = _day(since_ms) if since_ms is not None else None
    last = _day(until_ms - 1) if until_ms is not None else None
    try:
        days = sorted(p for p in Path(backup_dir).iterdir()
                      if _DAY_DIR.match(p.name) and p.is_dir() and not p.is_symlink())
    except FileNotFoundError:
        return []
    return [f for day in days if not ((first and day.name < first) or (last and day.name > last))
            for f in sorted(day.glob("*.json")) if not f.name.startswith(".")]


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def damaged_backups(backup_dir: str | os.PathLike[str]) -> list[tuple[Path, str]]:
    """Every backup file the reader refuses (newer versions aside), with why."""
    damaged = [(path, "a symbolic link: backups are never read through links") for path in linked_files(backup_dir)]
    for path in backup_files(backup_dir):
        try:
            read_document(path)  # the check alone: records are not needed here (a third of the time)
        except BackupTooNew:
            continue
        except BackupError as exc:
            damaged.append((path, str(exc)))
    return damaged
