"""Support staff's `backups` commands on real spools and backup files, against the reference Manager."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from importlib import resources

import jsonschema
import pytest

from tests.kits.box import MAC, OTHER_MAC, capture, cli, make_box, mixed_session, ship

SCHEMA = json.loads((resources.files("voicelog.services.backup") / "schemas" / "backup.schema.json").read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    """Rich lays tables out for 200 columns, so long ids stay on one line."""
    monkeypatch.setenv("COLUMNS", "200")


# --- list and show -----------------------------------------------------------------------------

async def test_list_counts_each_sessions_turns_by_delivery_status(tmp_path, reference_manager, capsys):
    """`list` shows the session's MAC and 2 delivered, 2 pending, 2 parked and 1 dead-letter turns."""
    box = make_box(tmp_path, reference_manager)
    session_id = await mixed_session(box, reference_manager)
    await capture(box, ["another device"], mac=OTHER_MAC, n=1)
    capsys.readouterr()

    assert cli(box, "list", "--json") == 0
    listed = {s["session_id"]: s for s in json.loads(capsys.readouterr().out)}
    assert listed[session_id]["mac"] == MAC
    assert listed[session_id]["turns"] == {"delivered": 2, "pending": 2, "parked": 2, "dead_letter": 1,
                                           "open": 0, "skipped": 0}
    assert listed[session_id]["ended_at"] is not None

    assert cli(box, "list") == 0
    header, *rows = capsys.readouterr().out.splitlines()
    row = next(dict(zip(header.split(), line.split())) for line in rows if session_id in line)
    assert row["mac"] == MAC and row["session"] == session_id
    assert [row[k] for k in ("delivered", "pending", "parked", "dead-letter")] == ["2", "2", "2", "1"]


async def test_list_filters_by_mac_status_and_time(tmp_path, reference_manager, capsys):
    """`--mac`, `--status` and `--since/--until` narrow the list to the sessions asked for."""
    box = make_box(tmp_path, reference_manager)
    mixed = await mixed_session(box, reference_manager)
    other = await capture(box, ["another device"], mac=OTHER_MAC, n=1)
    capsys.readouterr()

    def listed(*args: str) -> set[str]:
        assert cli(box, "list", "--json", *args) == 0
        return {s["session_id"] for s in json.loads(capsys.readouterr().out)}

    assert listed() == {mixed, other}
    assert listed("--mac", OTHER_MAC.upper().replace(":", "-")) == {other}
    assert listed("--status", "dead-letter") == {mixed}
    assert listed("--status", "parked", "--status", "pending") == {mixed, other}
    assert listed("--since", "1h") == {mixed, other}
    assert listed("--until", "2001-01-01") == set()


async def test_show_reads_the_conversation_with_each_turns_status_and_last_error(tmp_path, reference_manager,
                                                                                capsys):
    """`show` lists who said what, marks the interrupted reply and gives each turn's status and error."""
    box = make_box(tmp_path, reference_manager)
    session_id = await mixed_session(box, reference_manager)
    capsys.readouterr()

    assert cli(box, "show", session_id[:13]) == 0  # a unique start of the id is enough
    out = capsys.readouterr().out
    rows = {words[0]: words for words in map(str.split, out.splitlines()) if words and words[0].isdigit()}
    assert rows["1"][2:] == ["child", "turn", "1", "dead-letter"]
    assert rows["2"][2:] == ["toy", "turn", "2", "[interrupted]", "delivered"]
    assert rows["4"][-1] == "parked" and rows["7"][-1] == "pending"
    assert "HTTP 400" in out and "MAC not bound" in out
    assert f"Device  {MAC}" in out


async def test_show_accepts_a_backup_file_and_prints_json(tmp_path, reference_manager, capsys):
    """Given a backup file path, `show --json` prints that session in the schema-valid backup format."""
    box = make_box(tmp_path, reference_manager)
    session_id = await mixed_session(box, reference_manager)
    capsys.readouterr()

    assert cli(box, "show", str(box.backup_of(session_id)), "--json") == 0
    document = json.loads(capsys.readouterr().out)
    assert document.pop("source") == "backup"
    jsonschema.validate(document, SCHEMA)
    assert [t["content"] for t in document["turns"]] == [f"turn {i}" for i in range(1, 8)]
    assert cli(box, "show", "no-such-session") == 1
    assert "no session 'no-such-session'" in capsys.readouterr().err


# --- verify ------------------------------------------------------------------------------------

async def test_verify_passes_untouched_backups_and_names_each_broken_file(tmp_path, reference_manager, capsys):
    """Truncated, off-schema, edited and missing backups each get a precise line, and exit 1."""
    box = make_box(tmp_path, reference_manager)
    await reference_manager.bind_device(MAC)
    sessions = [await capture(box, [f"s{n} turn 1", f"s{n} turn 2"], n=n) for n in range(4)]
    await ship(box)
    junk = box.backup_of(sessions[0]).parent / "notes.json"
    capsys.readouterr()
    assert cli(box, "verify") == 0, capsys.readouterr().out
    assert "OK" in capsys.readouterr().out

    truncated, off_schema, edited, missing = (box.backup_of(s) for s in sessions)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    document = json.loads(off_schema.read_text())
    document["turns"][1]["status"] = "sent"
    off_schema.write_text(json.dumps(document))
    document = json.loads(edited.read_text())
    document["turns"][0]["content"] = "something else"
    edited.write_text(json.dumps(document))
    missing.unlink()
    junk.write_text("{not json}")

    assert cli(box, "verify") == 1
    lines = capsys.readouterr().out.splitlines()

    def line_about(needle: str) -> str:
        return next(line for line in lines if needle in line)

    assert "truncated" in line_about(str(truncated))
    assert "turns[1].status" in line_about(str(off_schema)) and "'sent'" in line_about(str(off_schema))
    assert "turn #1 differs from the spool in content" in line_about(str(edited))
    assert "no backup file" in line_about(sessions[3])
    assert "not valid JSON at line 1 column 2" in line_about(str(junk))
    assert "5 problems" in line_about("checked ")

    assert cli(box, "verify", "--fix") == 1  # the unreadable stray file is nobody's: it stays
    out = capsys.readouterr().out
    assert "rewrote 4 backup file(s) from the spool" in out and "1 problem," in out
    document = json.loads(edited.read_text())
    assert document["turns"][0]["content"] == "s2 turn 1" and missing.exists()


# --- export --------------------------------------------------------------------------------------

async def test_export_writes_a_session_as_csv_and_sessions_as_json_for_a_ticket(tmp_path, reference_manager,
                                                                              capsys):
    """CSV has one row per turn with status and error; JSON holds schema-valid sessions; files are private."""
    box = make_box(tmp_path, reference_manager)
    session_id = await mixed_session(box, reference_manager)
    await capture(box, ["another device"], mac=OTHER_MAC, n=1)
    capsys.readouterr()

    assert cli(box, "export", session_id, "--format", "csv") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["content"] for r in rows] == [f"turn {i}" for i in range(1, 8)]
    assert rows[0]["status"] == "dead_letter" and "HTTP 400" in rows[0]["last_error"]
    assert {r["mac"] for r in rows} == {MAC}

    target = tmp_path / "ticket.json"
    assert cli(box, "export", "--mac", MAC, "--output", str(target)) == 0
    documents = json.loads(target.read_text(encoding="utf-8"))
    assert [d["session_id"] for d in documents] == [session_id]
    jsonschema.validate(documents[0], SCHEMA)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600


# --- prune --------------------------------------------------------------------------------------

async def test_prune_removes_old_delivered_sessions_and_keeps_undelivered_turns(tmp_path, reference_manager,
                                                                              capsys):
    """Past retention, a delivered session and its file go; one with undelivered turns stays whole."""
    box = make_box(tmp_path, reference_manager, chat_history={"retention_days": 0})
    await reference_manager.bind_device(MAC)
    delivered = await capture(box, ["all delivered 1", "all delivered 2"], n=0)
    await ship(box)
    undelivered = await capture(box, ["never sent"], mac=OTHER_MAC, n=1)  # OTHER_MAC is not bound
    delivered_file, undelivered_file = box.backup_of(delivered), box.backup_of(undelivered)
    capsys.readouterr()

    assert cli(box, "prune", "--dry-run") == 0
    assert f"would remove {delivered}" in capsys.readouterr().out
    assert box.spool.session(delivered) is not None and delivered_file.exists()

    assert cli(box, "prune") == 0
    out = capsys.readouterr().out
    assert f"removed {delivered}" in out and f"kept {undelivered}" in out
    assert box.spool.session(delivered) is None and box.spool.turns(delivered) == []
    assert not delivered_file.exists()
    assert [t.content for t in box.spool.turns(undelivered)] == ["never sent"]
    assert undelivered_file.exists()
