"""Backup format 2 carries each turn's measurements; version 1 files stay listable, showable, verifiable, replayable."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from importlib import resources

import jsonschema
import pytest

from tests.kits.agents import SCRIPTED
from tests.kits.box import MAC, cli, make_box
from tests.kits.delivery import contents
from voicelog.agent.talk import talk

SCHEMAS = resources.files("voicelog.services.backup") / "schemas"
ROOM = "5f0c0c8e-1111-4aaa-8bbb-000000000001_6825ddba3978"


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    """Rich lays tables out for 200 columns, so each turn stays on its lines."""
    monkeypatch.setenv("COLUMNS", "200")


async def talked_box(tmp_path, manager):
    """A box with one scripted session typed through talk: two child turns, two replies."""
    box = make_box(tmp_path, manager, agent=SCRIPTED)
    code = await talk(box.settings, MAC, ROOM, source=["hello", "do fish sleep"], out=io.StringIO(),
                      err=io.StringIO())
    assert code == 0
    return box


async def test_a_scripted_sessions_backup_holds_each_turns_metrics_and_shows_them(tmp_path, reference_manager,
                                                                                 capsys):
    """Version 2 backups carry language and metrics (valid against the v2 schema); show -v and exports carry them."""
    box = await talked_box(tmp_path, reference_manager)
    document = json.loads(box.backup_of(ROOM).read_text())
    jsonschema.validate(document, json.loads((SCHEMAS / "backup.schema.json").read_text()))
    assert document["version"] == 2
    users = [t for t in document["turns"] if t["role"] == "user"]
    replies = [t for t in document["turns"] if t["role"] == "agent"]
    assert [t["language"] for t in users] == ["en", "en"]
    assert all({"started_speaking_at_ms", "stopped_speaking_at_ms", "end_of_turn_delay_ms"} <= set(t["metrics"])
               for t in users)
    assert all({"e2e_latency_ms", "llm_node_ttft_ms", "tts_node_ttfb_ms"} <= set(t["metrics"]) for t in replies)
    capsys.readouterr()

    assert cli(box, "show", ROOM, "--verbose") == 0
    shown = capsys.readouterr().out
    assert shown.count("· language en") == 2 and shown.count("waited ") == 2
    assert cli(box, "show", ROOM) == 0
    assert "waited" not in capsys.readouterr().out
    assert cli(box, "export", ROOM, "--format", "csv") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["language"] for r in rows] == ["en", "", "en", ""]
    assert float(rows[1]["e2e_latency_ms"]) == replies[0]["metrics"]["e2e_latency_ms"]


async def test_a_version_1_backup_still_lists_shows_verifies_and_replays(tmp_path, reference_manager, capsys):
    """A file written as version 1 (no language, no metrics) is read by every support command and delivered."""
    await reference_manager.bind_device(MAC)
    box = await talked_box(tmp_path / "old-box", reference_manager)
    document = json.loads(box.backup_of(ROOM).read_text())
    document["version"] = 1
    for turn in document["turns"]:
        turn.pop("language", None), turn.pop("metrics", None)
    jsonschema.validate(document, json.loads((SCHEMAS / "backup.schema.v1.json").read_text()))
    box.backup_of(ROOM).write_text(json.dumps(document), encoding="utf-8")  # as an older voicelog wrote it
    said = [t["content"] for t in document["turns"]]
    capsys.readouterr()

    assert cli(box, "list", "--json") == 0
    assert [s["session_id"] for s in json.loads(capsys.readouterr().out)] == [ROOM]
    assert cli(box, "show", str(box.backup_of(ROOM)), "--verbose") == 0
    shown = capsys.readouterr().out
    assert all(text.split()[0] in shown for text in said) and "waited" not in shown
    assert cli(box, "verify") == 0
    assert "OK" in capsys.readouterr().out
    copied = tmp_path / "usb-stick" / box.backup_of(ROOM).name
    copied.parent.mkdir()
    copied.write_text(json.dumps(document), encoding="utf-8")
    elsewhere = make_box(tmp_path / "new-box", reference_manager)
    assert await asyncio.to_thread(cli, elsewhere, "replay", str(copied)) == 0
    assert contents(await reference_manager.rows(ROOM)) == said
