"""The device MAC and session id come from the session, the most trusted source winning."""

import pytest

from voicelog.services.domain import normalise_mac, resolve_identity

ROOM = "d3746a02-cfeb-417d-ad05-0c6d3095632d_6825ddba3978"


@pytest.mark.parametrize("text", ["68:25:dd:ba:39:78", "68:25:DD:BA:39:78", "68-25-dd-ba-39-78",
                                  "68_25_dd_ba_39_78", "6825ddba3978", " 68:25:dd:ba:39:78 "])
def test_common_mac_notations_normalise_to_lowercase_colon_form(text):
    """Every notation the gateway or configs use becomes the Manager's exact form."""
    assert normalise_mac(text) == "68:25:dd:ba:39:78"


@pytest.mark.parametrize("text", ["", "68:25:dd:ba:39", "68:25:dd:ba:39:7g", "6825dd:ba3978",
                                  "68:25:dd:ba:39:78:00", "'; DROP TABLE x;--", "６８:25:dd:ba:39:78",
                                  None, 42, "x" * 10_000])
def test_malformed_or_hostile_macs_are_refused(text):
    """Anything that is not exactly six hex byte pairs is not a MAC."""
    assert normalise_mac(text) is None


def test_the_participant_attribute_wins_and_disagreement_is_recorded():
    """device_mac outranks identity and room name; the other values are kept for the log."""
    identity = resolve_identity(ROOM, {"device_mac": "68:25:dd:ba:39:79"}, "68:25:dd:ba:39:78")
    assert identity.mac == "68:25:dd:ba:39:79"
    assert identity.mac_source == "attribute"
    assert ("identity", "68:25:dd:ba:39:78") in identity.disagreement
    assert identity.session_id == ROOM


def test_room_name_alone_yields_the_mac():
    """The last 12 hex characters of the room name are the MAC when nothing else is given."""
    identity = resolve_identity(ROOM, {}, "agent-xyz")
    assert (identity.mac, identity.mac_source, identity.mac_valid) == ("68:25:dd:ba:39:78", "room_name", True)


def test_a_session_with_no_valid_mac_is_still_identified_and_marked():
    """No valid source gives a marked, unroutable identity rather than nothing."""
    identity = resolve_identity("console", {"device_mac": "nope"}, "someone")
    assert identity.mac_valid is False
    assert identity.session_id == "console"


def test_overlong_room_names_are_cut_to_the_session_column():
    """The Manager's session_id column is VARCHAR(50); distinct rooms stay distinct."""
    first = resolve_identity("r" * 80 + "_6825ddba3978")
    second = resolve_identity("r" * 80 + "_6825ddba3979")
    assert len(first.session_id) == 50
    assert first.session_id != second.session_id
