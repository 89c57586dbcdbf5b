"""Hostile backup files: every command answers with one clear line, imports are all or nothing.

Files anyone could drop into the backup folder or hand to ``backups show/replay``: nesting
deeper than any parser allows, a lone surrogate (raw, or spelled as a JSON escape), times and
numbers out of range, a session whose turns cannot all be stored, and a symbolic link to a
system file (which must reveal nothing about that file, not even its size).
"""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from tests.kits.box import capture, cli, make_box

PASSWD = "/etc/passwd"


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    """Rich lays tables out for 200 columns, so long ids stay on one line."""
    monkeypatch.setenv("COLUMNS", "200")


def hostile_files(folder, good: dict) -> dict[str, object]:
    """Write each hostile file next to a good backup; {name: path}."""
    def variant(name: str, **changes) -> dict:
        document = json.loads(json.dumps(good))
        document.update(session_id=name, **changes)
        document["turns"] = [dict(t, id=f"{name}#{t['seq']}") for t in document["turns"]]
        return document

    files = {
        "deep": '{"format": "voicelog.session-backup", "version": 1, "turns": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "surrogate-raw": json.dumps(variant("surrogate-raw"), ensure_ascii=False).replace(
            "hello", "he\udcffllo").encode("utf-8", "surrogatepass"),
        "surrogate-escape": json.dumps(variant("surrogate-escape")).replace("hello", "he\\udcffllo"),
        "time-1e20": json.dumps(variant("time-1e20", started_ms=1e20)),
        "int-2-63": json.dumps(variant("int-2-63", skipped_empty_turns=2**63)),
        "seq-twice": json.dumps(variant("seq-twice", turns=[dict(t, seq=1) for t in good["turns"]])),
    }
    paths = {}
    for name, data in files.items():
        path = folder / f"{name}.json"
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        paths[name] = path
    paths["link"] = folder / "link.json"
    paths["link"].symlink_to(PASSWD)
    return paths


def one_clear_line(captured) -> str:
    """The error a command printed: one line starting with "voicelog:", no traceback."""
    assert "Traceback" not in captured.out + captured.err
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("voicelog:"), captured.err
    return lines[0]


async def test_each_hostile_backup_gets_one_clear_line_from_every_command(tmp_path, reference_manager, capsys):
    """show, export and replay refuse each file in one line; list and verify carry on; nothing half-imported."""
    box = make_box(tmp_path, reference_manager)
    good_id = await capture(box, ["hello", "hi there"])
    good = json.loads(box.backup_of(good_id).read_text())
    paths = hostile_files(box.backup_of(good_id).parent, good)
    capsys.readouterr()
    passwd_size, passwd_lines = str(os.path.getsize(PASSWD)), str(open(PASSWD).read().count("\n") + 1)

    unreadable = {name: path for name, path in paths.items() if name != "seq-twice"}
    for name, path in unreadable.items():
        for command in ("show", "export"):
            assert cli(box, command, str(path)) == 1, (name, command)
            line = one_clear_line(capsys.readouterr())
            assert passwd_size not in line and passwd_lines not in line.split(), line
    for name, path in paths.items():
        assert await asyncio.to_thread(cli, box, "replay", str(path)) == 2, name
        line = one_clear_line(capsys.readouterr())
        assert name != "link" or "symbolic link" in line
        assert name != "seq-twice" or "nothing of it stored" in line
    assert box.spool.session_ids() == {good_id}, "nothing of a refused backup was imported"

    assert cli(box, "list") == 0
    assert f"{len(unreadable)} backup file(s) could not be read" in capsys.readouterr().err
    assert cli(box, "verify") == 1
    report = capsys.readouterr()
    assert "Traceback" not in report.out + report.err
    assert all(str(path) in report.out for path in paths.values())
    assert cli(box, "purge", "--session", "seq-twice") == 0 and not paths["seq-twice"].exists()
    assert os.path.exists(PASSWD) and paths["link"].is_symlink(), "a link is never followed, never its target"
