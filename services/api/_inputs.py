"""What the /v1 routes accept: a MAC, a session id, a time; anything else is a clear 400."""

from __future__ import annotations

from datetime import UTC, datetime

from voicelog.services.domain import MAX_SESSION_ID_CHARS, normalise_mac

_FORBIDDEN_IN_IDS = ("/", "\\", "\x00")


class BadInput(ValueError):
    """A request value is not allowed; the message says what is (and never echoes the value)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def parse_mac(text: str) -> str:
    """A MAC in any common notation, in lowercase colon form."""
    mac = normalise_mac(text)
    if mac is None:
        raise BadInput("mac", "not a MAC address: give 12 hex digits, e.g. 68:25:dd:ba:39:78")
    return mac


def parse_session_id(text: str) -> str:
    """A session id as stored (the LiveKit room name, at most 50 characters)."""
    if not text or len(text) > MAX_SESSION_ID_CHARS or any(c in text for c in _FORBIDDEN_IN_IDS) \
            or not text.isprintable():
        raise BadInput("session_id", f"not a session id: 1 to {MAX_SESSION_ID_CHARS} printable characters, "
                                     "no slashes")
    return text


def parse_since(text: str) -> int:
    """Epoch ms from epoch milliseconds or an ISO 8601 date or datetime (UTC unless an offset is given)."""
    text = text.strip()
    if text.isdigit() and len(text) <= 15:
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadInput("since", "not a time: give epoch milliseconds, a date (2026-05-01) or a datetime "
                                "(2026-05-01T10:30:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
