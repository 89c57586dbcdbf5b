"""Argument types of the ``backups`` commands: MACs, times (dates, datetimes, ages) and statuses."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta

from voicelog.services.domain import UNKNOWN_MAC, TurnStatus, normalise_mac

_AGE = re.compile(r"^(\d+)([mhd])$")


def mac(text: str) -> str:
    """A MAC in any notation (or ``unknown``), as stored."""
    if text.strip().lower() == UNKNOWN_MAC:
        return UNKNOWN_MAC
    found = normalise_mac(text)
    if found is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a MAC address (e.g. 68:25:dd:ba:39:78)")
    return found


def parse_when(text: str, *, end: bool = False) -> int:
    """Epoch ms from an ISO date or datetime (UTC unless an offset is given) or an age (``2d``).

    With ``end``, a bare date means the end of that day, so ``--until 2026-05-01`` includes it.
    """
    text = text.strip()
    age = _AGE.match(text)
    if age:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[age.group(2)]
        return int((datetime.now(UTC) - timedelta(**{unit: int(age.group(1))})).timestamp() * 1000)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date (2026-05-01), a datetime (2026-05-01T10:30, UTC "
                         "unless an offset is given) or an age (30m, 6h, 2d)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if end and len(text) == 10:
        moment += timedelta(days=1)
    return int(moment.timestamp() * 1000)


def when(text: str) -> int:
    """``--since``: a moment."""
    try:
        return parse_when(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def when_end(text: str) -> int:
    """``--until``: a moment, a bare date meaning its end."""
    try:
        return parse_when(text, end=True)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def status(text: str) -> TurnStatus:
    """A turn status as people write it (``dead-letter``)."""
    try:
        return TurnStatus(text.strip().lower().replace("-", "_"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a status (delivered, pending, parked, "
                                         "dead-letter, open, skipped)") from None
