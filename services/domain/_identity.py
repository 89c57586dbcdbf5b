"""Work out which device a LiveKit session belongs to: its MAC and its session id.

Sources, in order of trust (shared/contracts/device-sessions.md): the participant attribute
``device_mac``, the participant identity, then the last ``_`` segment of the room name.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

MAC_PATTERN = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_HEX12 = re.compile(r"^[0-9a-f]{12}$")
# Session ids land in a VARCHAR(50) column; a longer room name cannot be stored as-is.
MAX_SESSION_ID_CHARS = 50
UNKNOWN_MAC = "unknown"


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


def resolve_identity(room_name: str, attributes: Mapping[str, str] | None = None,
                     participant_identity: str | None = None) -> DeviceIdentity:
    """Combine every MAC source; the most trusted valid one wins, disagreements are recorded."""
    candidates = [
        ("attribute", normalise_mac((attributes or {}).get("device_mac"))),
        ("identity", normalise_mac(participant_identity)),
        ("room_name", mac_from_room_name(room_name)),
    ]
    found = [(source, mac) for source, mac in candidates if mac]
    session_id = session_id_from_room(room_name)
    if not found:
        return DeviceIdentity(UNKNOWN_MAC, session_id, False, "none")
    source, mac = found[0]
    disagreement = tuple((s, m) for s, m in found if m != mac)
    return DeviceIdentity(mac, session_id, True, source, disagreement)


def session_id_from_room(room_name: str | None) -> str:
    """Use the room name as the session id; never empty, never longer than the column."""
    name = (room_name or "").strip()
    if not name:
        return "unnamed-room"
    if len(name) <= MAX_SESSION_ID_CHARS:
        return name
    # Cut, but keep a digest so two long names sharing a prefix stay two sessions.
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{name[:MAX_SESSION_ID_CHARS - 13]}~{digest}"
