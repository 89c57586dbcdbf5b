"""Work out which device a LiveKit session belongs to: its MAC and its session id.

Sources, in order of trust (shared/contracts/device-sessions.md): the participant attribute
``device_mac``, the participant identity, then the last ``_`` segment of the room name.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

MAC_PATTERN = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_HEX12 = re.compile(r"^[0-9a-f]{12}$")
# Session ids land in a VARCHAR(50) column; a longer room name cannot be stored as-is.
MAX_SESSION_ID_CHARS = 50
UNKNOWN_MAC = "unknown"
# A room name used as the session id as it is: what gateway names look like, safe in a file
# name and in the Manager's column. Anything else is rewritten, with REWRITE_MARK (never part
# of a safe id) and a digest of the exact original, so no two rooms ever share a session id.
SAFE_SESSION_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,49}$")
REWRITE_MARK = "~"
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_DIGEST_CHARS = 16


def normalise_mac(text: str | None) -> str | None:
    """Return the lowercase colon form of a MAC written with ``:``, ``-``, ``_`` or no separator."""
    if not isinstance(text, str):
        return None
    candidate = text.strip().lower()
    if len(candidate) > 17:
        return None
    bare = re.sub(r"[:\-_]", "", candidate)
    if not _HEX12.match(bare):
        return None
    # Separators, when present, must sit between byte pairs: reject "6825dd:ba3978".
    if bare != candidate and not re.fullmatch(r"[0-9a-f]{2}([:\-_][0-9a-f]{2}){5}", candidate):
        return None
    return ":".join(bare[i:i + 2] for i in range(0, 12, 2))


def mac_from_room_name(room_name: str | None) -> str | None:
    """Return the MAC encoded as the last ``_`` segment of a gateway room name."""
    if not room_name or "_" not in room_name:
        return None
    tail = room_name.rsplit("_", 1)[1].lower()
    return normalise_mac(tail) if _HEX12.match(tail) else None


@dataclass(frozen=True)
class DeviceIdentity:
    """Who a session belongs to; ``mac_valid`` False means captured but not routable."""

    mac: str
    session_id: str
    mac_valid: bool
    mac_source: str
    disagreement: tuple[tuple[str, str], ...] = ()
    renamed: str | None = None  # why the session id is not the room name as given (None: it is)


def resolve_identity(room_name: str, attributes: Mapping[str, str] | None = None,
                     participant_identity: str | None = None) -> DeviceIdentity:
    """Combine every MAC source; the most trusted valid one wins, disagreements are recorded."""
    candidates = [
        ("attribute", normalise_mac((attributes or {}).get("device_mac"))),
        ("identity", normalise_mac(participant_identity)),
        ("room_name", mac_from_room_name(room_name)),
    ]
    found = [(source, mac) for source, mac in candidates if mac]
    session_id, renamed = session_id_for_room(room_name)
    if not found:
        return DeviceIdentity(UNKNOWN_MAC, session_id, False, "none", renamed=renamed)
    source, mac = found[0]
    disagreement = tuple((s, m) for s, m in found if m != mac)
    return DeviceIdentity(mac, session_id, True, source, disagreement, renamed)


def session_id_for_room(room_name: str | None) -> tuple[str, str | None]:
    """The session id for a room, and why it differs from the room name (None: it does not).

    Injective: a safe room name is used as it is; any other is trimmed, cut and cleaned, then
    marked with ``~`` and a digest of the exact original, so it can equal neither a safe name
    nor another rewritten one. A blank room name is no name at all: it gets a unique id.
    """
    if room_name is None or not room_name.strip():
        return f"unnamed{REWRITE_MARK}{uuid.uuid4().hex[:_DIGEST_CHARS]}", "blank room name: a unique id was made"
    if SAFE_SESSION_ID.match(room_name):
        return room_name, None
    digest = hashlib.sha256(room_name.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST_CHARS]
    stem = _UNSAFE_CHARS.sub("_", room_name.strip()).lstrip(".")
    return f"{stem[:MAX_SESSION_ID_CHARS - 1 - _DIGEST_CHARS]}{REWRITE_MARK}{digest}", _why_rewritten(room_name)


def _why_rewritten(room_name: str) -> str:
    """What made a room name unusable as it is, in words (never the name itself)."""
    name = room_name.strip()
    reasons = [why for why, applies in (
        ("has surrounding whitespace", name != room_name),
        (f"is longer than {MAX_SESSION_ID_CHARS} characters", len(room_name) > MAX_SESSION_ID_CHARS),
        ("has characters other than A-Z a-z 0-9 . _ - (or a leading dot)",
         bool(_UNSAFE_CHARS.search(name)) or name.startswith("."))) if applies]
    return "room name " + " and ".join(reasons)
