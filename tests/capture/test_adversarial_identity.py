"""Malformed and hostile MACs and room names: captured safely, routed only when truly valid.

Stated outcomes: a MAC in any common notation becomes lowercase colon form and is routable;
anything else leaves the session captured under mac "unknown" (parked with a reason by the
shipper, replayable with --mac). A room name of any content or length becomes a session id
of 1..50 characters whose backup file stays inside the backup folder. Room names come from
LiveKit as valid UTF-8, so they never hold lone surrogates (not generated here).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voicelog.services.backup import BackupWriter, read_document
from voicelog.services.capture import ChatHistoryService
from voicelog.services.config import ChatHistorySettings
from voicelog.services.domain import MAC_PATTERN, UNKNOWN_MAC, ChatType, resolve_identity
from voicelog.services.spool import Spool, open_spool

HOSTILE_PIECES = ["../", "..", "/", "\\", "\x00", "%00", "~", ".", " ", "_", "6825ddba3978",
                  "6825DDBA3978", "ZZZZZZZZZZZZ", "'; DROP TABLE sessions; --", "<script>", "🐉",
                  "\u202e", "CON", "nul", ".json", "\n", "*", "?", ":", "68:25:dd:ba:39:78"]
ROOM = st.lists(st.one_of(st.text(st.characters(exclude_categories=("Cs",)), max_size=20),
                          st.sampled_from(HOSTILE_PIECES)), max_size=12).map("".join)
MAC_TEXT = st.one_of(st.text(st.characters(exclude_categories=("Cs",)), max_size=24),
                     st.sampled_from(HOSTILE_PIECES), st.none(),
                     st.from_regex(r"[0-9a-fA-F]{2}([:\-_][0-9a-fA-F]{2}){5}", fullmatch=True))
# (attribute given, stored mac or None for "unknown")
MAC_CASES = [
    ("68:25:DD:BA:39:78", "68:25:dd:ba:39:78"), ("68-25-dd-ba-39-78", "68:25:dd:ba:39:78"),
    ("68_25_dd_ba_39_78", "68:25:dd:ba:39:78"), ("6825ddba3978", "68:25:dd:ba:39:78"),
    (" 68:25:dd:ba:39:78 ", "68:25:dd:ba:39:78"), ("00:00:00:00:00:00", "00:00:00:00:00:00"),
    ("68:25:dd:ba:39", None), ("68:25:dd:ba:39:78:00", None), ("zz:zz:zz:zz:zz:zz", None),
    ("68:25:dd:ba:39:78\x00", None), ("68:25:dd:ba:39:7", None), ("6825dd:ba3978", None),
    ("６８:２５:ｄｄ:ｂａ:３９:７８", None), ("68:25:dd:ba:39:78'; DROP TABLE x; --", None),
    ("", None), ("   ", None), ("🐉🐉:🐉🐉:🐉🐉:🐉🐉:🐉🐉:🐉🐉", None), ("68:25:dd:ba:39:7g", None),
    ("68::25:dd:ba:39:78", None), ("0x6825ddba3978", None), ("68.25.dd.ba.39.78", None),
]


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> tuple[Spool, Path]:
    """A real spool and backup folder shared by every case."""
    root = tmp_path_factory.mktemp("identity")
    spool = open_spool(root / "spool.db")
    yield spool, root / "backups"
    spool.close()


def capture_one(spool: Spool, backups: Path, identity) -> Path:
    """Capture one turn for the identity and write its backup; return the backup path."""
    service = ChatHistoryService(spool, identity, ChatHistorySettings(), backups=BackupWriter(backups))
    service.add_message(ChatType.USER, "hello")
    path = BackupWriter(backups).write(spool, identity.session_id, 1)
    assert path is not None
    return path


@pytest.mark.parametrize(("given_mac", "kept"), MAC_CASES, ids=[repr(c[0])[:30] for c in MAC_CASES])
def test_each_mac_form_has_its_stated_outcome(place, given_mac, kept):
    """Common notations are normalised and routable; everything else is captured as unknown."""
    spool, backups = place
    identity = resolve_identity(f"{uuid.uuid4()}", {"device_mac": given_mac}, None)
    capture_one(spool, backups, identity)
    session = spool.session(identity.session_id)
    assert (session.mac, session.mac_valid) == ((kept, True) if kept else (UNKNOWN_MAC, False))


@settings(max_examples=450, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(room=ROOM, attribute=MAC_TEXT, participant=MAC_TEXT, unique=st.booleans())
def test_any_room_and_mac_is_captured_safely(place, room, attribute, participant, unique):
    """Any room name and MAC text: session id 1..50 chars, backup inside the folder, turn stored."""
    spool, backups = place
    room = f"{uuid.uuid4().hex}{room}" if unique else room
    identity = resolve_identity(room, {"device_mac": attribute} if attribute is not None else {}, participant)
    assert 1 <= len(identity.session_id) <= 50
    assert (identity.mac_valid and MAC_PATTERN.match(identity.mac)) or (
        not identity.mac_valid and identity.mac == UNKNOWN_MAC)
    path = capture_one(spool, backups, identity)
    assert path.resolve().is_relative_to(backups.resolve()) and len(path.name.encode()) <= 255
    assert read_document(path)["session_id"] == identity.session_id
    assert [t.content for t in spool.turns(identity.session_id)][-1] == "hello"
