"""Choose what a replay sends, and bring backups copied from other boxes into the spool.

A request names sessions, backup files or filters; planning turns it into the sessions and
turns to send, merging a backup with what the spool already holds (local turns win). Importing
stores such a backup's missing turns through the spool's own API, sealing turns left open.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from voicelog.services.backup import Backup, BackupError, read_backup
from voicelog.services.domain import SessionRecord, Turn, TurnStatus, normalise_mac, process_owner
from voicelog.services.spool import STORAGE_ERRORS, Spool, SpoolError
from voicelog.services.support._catalog import Catalog, SessionFilter

RESENDABLE = (TurnStatus.PENDING, TurnStatus.PARKED, TurnStatus.DEAD_LETTER)


class ReplayError(ValueError):
    """The replay cannot go on as asked; the message says why (and what was already done)."""


@dataclass(frozen=True)
class ReplayRequest:
    """What support staff asked to replay, as parsed from the command line."""

    session_ids: tuple[str, ...] = ()
    files: tuple[Path, ...] = ()
    mac: str | None = None  # selects a device; also given to named sessions captured without one
    since_ms: int | None = None
    until_ms: int | None = None
    statuses: tuple[TurnStatus, ...] = ()  # empty: every undelivered status (+ delivered with force)
    force: bool = False
    dry_run: bool = False
    max_attempts: int = 5
    timeout: float = 300.0
    own_manager: bool = False  # --manager-url given: only this process can deliver there

    @property
    def wanted_statuses(self) -> tuple[TurnStatus, ...]:
        """The statuses of turns this replay re-sends."""
        if self.statuses:
            return self.statuses
        return RESENDABLE + ((TurnStatus.DELIVERED,) if self.force else ())


@dataclass
class PlannedSession:
    """One session's part of a replay: the turns to send, and what to fix first."""

    session: SessionRecord
    turns: list[Turn]
    backup: Backup | None = None  # import from here: the spool lacks the session or some turns
    set_mac: str | None = None  # give this MAC to a session captured without a valid one


# --- selection -------------------------------------------------------------------------------

def plan_replay(catalog: Catalog, request: ReplayRequest) -> list[PlannedSession]:
    """The sessions and turns a request selects; ReplayError when it names something wrong."""
    mac = _checked_mac(request.mac)
    allowed = set(RESENDABLE) | ({TurnStatus.DELIVERED} if request.force else set())
    if not set(request.statuses) <= allowed:
        raise ReplayError("replay sends dead-letter, parked and pending turns; delivered ones only "
                          "with --force; open and skipped ones never")
    named = _named_sessions(catalog, request)
    if not named and not (mac or request.since_ms or request.until_ms or request.statuses):
        raise ReplayError("say what to replay: a session, a backup file, --mac, --since/--until or --status")
    if named:
        plans = [_with_mac(plan, mac) for plan in named]
        plans = [p for p in plans if _in_range(p.session, request)]
    else:
        plans = _filtered_sessions(catalog, request, mac)
    wanted = set(request.wanted_statuses)
    for plan in plans:
        plan.turns = [t for t in plan.turns if t.status in wanted]
    return [plan for plan in plans if plan.turns]


def _checked_mac(mac: str | None) -> str | None:
    if mac is None:
        return None
    normal = normalise_mac(mac)
    if normal is None:
        raise ReplayError(f"--mac {mac!r} is not a MAC address (e.g. 68:25:dd:ba:39:78)")
    return normal


def _named_sessions(catalog: Catalog, request: ReplayRequest) -> list[PlannedSession]:
    plans: dict[str, PlannedSession] = {}
    for path in request.files:
        try:
            backup = read_backup(Path(path))
        except BackupError as exc:
            raise ReplayError(f"{path}: {exc}") from None
        plans[backup.session.session_id] = _merged(catalog.spool, backup)
    for ref in request.session_ids:
        session_id = catalog.resolve_id(ref) or ref
        if session_id in plans:
            continue
        session = catalog.spool.session(session_id) if catalog.spool else None
        if session is not None:
            plans[session_id] = PlannedSession(session, catalog.spool.turns(session_id))
        elif (path := catalog.find_file(ref)) is not None:
            plans[session_id] = _merged(catalog.spool, read_backup(path))
        else:
            raise ReplayError(f"no session {ref!r} in the spool or in {catalog.backup_dir}")
    return list(plans.values())


def _merged(spool: Spool | None, backup: Backup) -> PlannedSession:
    """A backup's session as the spool will hold it after import (local turns win)."""
    session = spool.session(backup.session.session_id) if spool else None
    local = spool.turns(backup.session.session_id) if session else []
    seqs = {t.seq for t in local}
    missing = [imported_turn(t) for t in backup.turns if t.seq not in seqs]
    turns = sorted(local + missing, key=lambda t: t.seq)
    return PlannedSession(session or backup.session, turns, backup if missing or not session else None)


def _with_mac(plan: PlannedSession, mac: str | None) -> PlannedSession:
    if mac is None or plan.session.mac == mac:
        return plan
    if plan.session.mac_valid:
        raise ReplayError(f"session {plan.session.session_id} belongs to {plan.session.mac}, not {mac}; "
                          "--mac only names the device of sessions captured without a valid MAC")
    plan.set_mac = mac
    return plan


def _in_range(session: SessionRecord, request: ReplayRequest) -> bool:
    return SessionFilter(since_ms=request.since_ms, until_ms=request.until_ms).matches(session, {})


def _filtered_sessions(catalog: Catalog, request: ReplayRequest, mac: str | None) -> list[PlannedSession]:
    """Sessions chosen by filters: the spool's, plus local backups the spool has lost."""
    wanted = SessionFilter(macs=frozenset([mac]) if mac else frozenset(), since_ms=request.since_ms,
                           until_ms=request.until_ms,
                           statuses=frozenset(s.value for s in request.wanted_statuses))
    plans = []
    for view in catalog.summaries(wanted):
        if view.source == "spool":
            assert catalog.spool is not None
            plans.append(PlannedSession(view.session, catalog.spool.turns(view.session.session_id)))
        elif view.backup_path is not None:
            plans.append(_merged(catalog.spool, read_backup(view.backup_path)))
    return plans


# --- importing backups ----------------------------------------------------------------------

def imported_turn(turn: Turn) -> Turn:
    """A turn from another box as this spool stores it: a turn left open there is sealed."""
    if turn.status is not TurnStatus.OPEN:
        return turn
    status = TurnStatus.PENDING if turn.content else TurnStatus.SKIPPED
    return Turn(**{**turn.__dict__, "status": status})


def import_backup(spool: Spool, backup: Backup, now_ms: int) -> int:
    """Add a backup's session and the turns the spool lacks, keeping ids, times and statuses.

    One transaction per session: all of its missing turns are imported, or none (ReplayError).
    Through the spool's own verb, so whatever it does to stored turns (caps, sealing) applies.
    """
    s = backup.session
    ended_ms = max([t.captured_ms for t in backup.turns] + [s.started_ms])
    try:
        return spool.import_session(s, [imported_turn(t) for t in backup.turns], owner=process_owner(),
                                    ended_ms=ended_ms)
    except (SpoolError, *STORAGE_ERRORS, ValueError, OverflowError) as exc:
        raise ReplayError(f"{backup.path}: not imported, nothing of it stored ({exc})") from None
