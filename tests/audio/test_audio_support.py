"""Support staff and clips: `backups show` marks them, `export --audio` writes WAVs, `verify` finds damage, `purge` erases."""

from __future__ import annotations

import sqlite3
import stat

import pytest

from tests.audio.test_audio_delivery import AUDIO_ON, MAC, SCRIPT, TIME_SCALE, files_with, wav_of
from tests.kits.settings import config_file, make_settings
from voicelog.agent.simulation.run import SimulatedDevice, simulate
from voicelog.cli.app import main
from voicelog.services.backup import backup_file_name


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")


async def box_with_clips(tmp_path) -> tuple[list[str], str]:
    """A config file with audio on, and one voiced session of two turns captured; (command prefix, session)."""
    settings = make_settings(tmp_path, audio=AUDIO_ON)
    summary = await simulate(settings, [SimulatedDevice(MAC, SCRIPT[:2])], time_scale=TIME_SCALE, deliver=False)
    config = config_file(tmp_path, audio=AUDIO_ON)
    return ["--config", str(config), "backups"], summary.session_ids[0]


async def test_show_marks_the_turns_with_audio(tmp_path, capsys):
    """Each child turn with a clip carries ♪ and its length; the toy's replies do not."""
    backups, session_id = await box_with_clips(tmp_path)
    capsys.readouterr()
    assert main([*backups, "show", session_id]) == 0
    out = capsys.readouterr().out
    assert "Audio   2 turns with the child's voice kept" in out
    lines = [line for line in out.splitlines() if "♪" in line and " s" in line and "Audio" not in line]
    assert len(lines) == 2 and all("child" in line or "Hi there" in line or "moon" in line for line in lines), out


async def test_export_audio_writes_one_private_wav_per_turn_named_by_session_and_sequence(tmp_path, capsys):
    """`backups export SESSION --audio DIR`: DIR/<session>_<seq>.wav, 16 kHz mono 16-bit, readable by its owner only."""
    backups, session_id = await box_with_clips(tmp_path)
    folder = tmp_path / "ticket-1234"
    assert main([*backups, "export", session_id, "--audio", str(folder), "--output", str(tmp_path / "s.json")]) == 0
    stem = backup_file_name(session_id).removesuffix(".json")
    written = sorted(p.name for p in folder.iterdir())
    assert written == [f"{stem}_0001.wav", f"{stem}_0003.wav"]
    for name in written:
        facts, seconds, _ = wav_of((folder / name).read_bytes())
        assert facts == (1, 2, 16_000) and seconds > 0.5
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    assert "wrote 2 audio clip(s)" in capsys.readouterr().err


async def test_verify_reports_a_corrupt_clip(tmp_path, capsys):
    """A clip whose bytes changed on disk fails verify (exit 1) with the session and turn named."""
    backups, session_id = await box_with_clips(tmp_path)
    assert main([*backups, "verify"]) == 0
    with sqlite3.connect(tmp_path / "backups" / "spool.db") as db:
        db.execute("UPDATE clips SET data = CAST(substr(data, 1, 60) || x'ff' || substr(data, 62) AS BLOB)"
                   " WHERE seq = 3")
    capsys.readouterr()
    assert main([*backups, "verify"]) == 1
    out = capsys.readouterr().out
    assert f"session {session_id}: turn #3's audio clip cannot be played" in out
    assert "damaged" in out and "#1's audio" not in out


async def test_purge_from_the_command_line_erases_the_clips(tmp_path, capsys):
    """`backups purge --mac`: the dry run counts the clips, the purge says it erased them, none left in any file."""
    backups, _ = await box_with_clips(tmp_path)
    assert files_with(tmp_path, b"OggS")
    assert main([*backups, "purge", "--mac", MAC, "--dry-run"]) == 0
    assert "would erase 1 session, 4 turns, 2 audio clips, 1 backup file" in capsys.readouterr().out
    assert main([*backups, "purge", "--mac", MAC]) == 0
    assert "erased 1 session, 4 turns, 2 audio clips, 1 backup file" in capsys.readouterr().out
    assert files_with(tmp_path, b"OggS") == []
