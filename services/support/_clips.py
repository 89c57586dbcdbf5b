"""Support staff's view of audio clips: which turns have one, a clip's damage, clips as WAV files.

Clips live only in the spool (never in the JSON backups: a backup travels between boxes and
tickets, a child's voice should not), so a session read from a backup alone shows none.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from voicelog.services.audio import ClipError, decode_clip, wav_bytes
from voicelog.services.backup import backup_file_name
from voicelog.services.domain import wall_ms
from voicelog.services.spool import ClipStore, ClipUnreadable, Spool

UNFINISHED_AFTER_MS = 60_000  # a reservation older than this was never going to be filled


@dataclass(frozen=True)
class ClipProblem:
    """A clip that cannot be played: its turn is (or will be) delivered without audio."""

    session_id: str
    seq: int
    what: str


def clip_seconds(spool: Spool | None, session_id: str) -> dict[int, float]:
    """Seconds of audio of each of a session's turns that has a stored clip (for ``backups show``)."""
    if spool is None:
        return {}
    return {seq: info.seconds for seq, info in ClipStore(spool).of_session(session_id).items()
            if not info.encoding}


def clip_problems(spool: Spool, *, now_ms: int | None = None) -> list[ClipProblem]:
    """Every clip that is damaged, cannot be opened with the configured keys, or was never finished."""
    store, now_ms = ClipStore(spool), wall_ms() if now_ms is None else now_ms
    found = []
    for session_id in store.sessions():
        for seq in store.of_session(session_id):
            stored = store.stored(session_id, seq)
            if stored is None or stored.data is None and now_ms - stored.created_ms < UNFINISHED_AFTER_MS:
                continue  # gone meanwhile, or still being encoded
            # The digest (taken when the clip was stored) finds damage without decoding: a box's
            # worth of clips is checked in seconds, not the minutes decoding would take.
            try:
                if not store.opened(stored).startswith(b"OggS"):
                    found.append(ClipProblem(session_id, seq, "not an Ogg/Opus clip"))
            except ClipUnreadable as exc:
                found.append(ClipProblem(session_id, seq, str(exc)))
    return found


def export_clips(spool: Spool, session_ids: Iterable[str], folder: Path) -> tuple[list[Path], list[ClipProblem]]:
    """Write each clip of the sessions as ``<session>_<seq>.wav`` (16 kHz mono, mode 0600) in ``folder``.

    The name is the session's backup file name (injective, safe on any filesystem) and the turn's
    sequence number. Clips that cannot be read are reported, not written.
    """
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = ClipStore(spool)
    written, problems = [], []
    for session_id in session_ids:
        stem = backup_file_name(session_id).removesuffix(".json")
        for seq, info in store.of_session(session_id).items():
            stored = store.stored(session_id, seq)
            if stored is None or info.encoding:
                continue
            try:
                audio = wav_bytes(decode_clip(store.opened(stored), max_seconds=stored.seconds or None))
            except (ClipUnreadable, ClipError) as exc:
                problems.append(ClipProblem(session_id, seq, str(exc)))
                continue
            written.append(_write_private(folder / f"{stem}_{seq:04d}.wav", audio))
    return written, problems


def _write_private(path: Path, data: bytes) -> Path:
    # Whole or not at all, readable by its owner only (a child's voice), never through a link.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with open(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
