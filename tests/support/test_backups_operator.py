"""`backups` as an operator meets it: narrow terminals, pipes, `| head`, other folders, repaired files."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

from tests.kits import REPO
from tests.kits.settings import config_file
from tests.kits.terminal import terminal, voicelog_command
from voicelog.agent.wiring import host_spool
from voicelog.cli.app import main
from voicelog.services.backup import BackupWriter
from voicelog.services.capture import ChatHistoryService
from voicelog.services.config import load_settings
from voicelog.services.domain import ChatType, resolve_identity

MAC = "68:25:dd:ba:39:78"


def capture_sessions(config: Path, rooms: list[str], turns: int = 2, text: str = "hello there") -> list[str]:
    """Capture ended sessions named by ``rooms`` into the box ``config`` describes; their ids."""
    settings = load_settings(config, environ={})
    spool = host_spool(settings)
    ids = []
    try:
        for room in rooms:
            identity = resolve_identity(room, {"device_mac": MAC}, MAC)
            service = ChatHistoryService(spool, identity, settings.chat_history,
                                         backups=BackupWriter(settings.chat_history.backup_dir))
            for i in range(turns):
                service.add_message(ChatType.USER if i % 2 == 0 else ChatType.AGENT, f"{text} {i}")
            spool.end_session(identity.session_id, ended_ms=spool.session(identity.session_id).started_ms + 1000,
                              reason="test_end")
            service.write_backup()
            ids.append(identity.session_id)
    finally:
        spool.close()
    return ids


def gateway_rooms(count: int, *, twin: bool = True) -> list[str]:
    """Room names as the gateway makes them; with ``twin``, one more sharing the first's 10 characters."""
    rooms = [f"{uuid.uuid4()}_{MAC.replace(':', '')}" for _ in range(count)]
    if twin:
        rooms.append(rooms[0][:10] + ("0" if rooms[0][10] != "0" else "1") + rooms[0][11:])
    return rooms


def run(config: Path, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(voicelog_command("--config", str(config), *args), cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


def test_list_on_an_80_column_terminal_shows_unique_id_starts_that_show_accepts(tmp_path, capsys):
    """At 80 columns no id wraps or vanishes: each row starts with a unique prefix of its id."""
    config = config_file(tmp_path)
    ids = capture_sessions(config, gateway_rooms(6))
    with terminal(voicelog_command("--config", str(config), "backups", "list"), width=80) as pane:
        screen = pane.wait_for("[exit 0]").splitlines()
    assert all(len(line) <= 80 for line in screen), screen
    assert MAC in "\n".join(screen), "the MAC column is not cut either"
    assert "7 sessions, times in UTC; read from spool" in screen[0]
    rows = [line for line in screen if line.split() and len(line.split()[0]) >= 8
            and any(i.startswith(line.split()[0]) for i in ids)]
    assert len(rows) == len(ids), "one line per session, none wrapped:\n" + "\n".join(screen)
    shown = [row.split()[0] for row in rows]
    assert all(len(prefix) >= 11 for prefix in shown), "the twins need 11 characters to differ"
    assert sorted(next(i for i in ids if i.startswith(p)) for p in shown) == sorted(ids)
    capsys.readouterr()
    assert main(["--config", str(config), "backups", "show", shown[-1]]) == 0
    assert next(i for i in ids if i.startswith(shown[-1])) in capsys.readouterr().out


def test_list_in_a_pipe_prints_whole_ids_one_line_each_and_says_where_on_stderr(tmp_path):
    """Piped, `list` is a header plus one parseable line per session with the full id."""
    config = config_file(tmp_path)
    ids = capture_sessions(config, gateway_rooms(4, twin=False))
    done = run(config, "backups", "list")
    assert done.returncode == 0, done.stderr
    header, *lines = done.stdout.splitlines()
    assert header.split() == ["session", "mac", "started", "ended", "delivered", "pending", "parked",
                              "dead-letter", "source"]
    assert sorted(line.split()[0] for line in lines) == sorted(ids)
    assert all(len(line.split()) == len(header.split()) for line in lines)
    spool = tmp_path / "backups" / "spool.db"
    assert f"4 sessions, times in UTC; read from spool {spool}" in done.stderr


def test_export_into_head_ends_quietly_with_the_sigpipe_status(tmp_path):
    """`backups export | head` (JSON or CSV) stops without a traceback; the status says the output was cut."""
    config = config_file(tmp_path)
    capture_sessions(config, gateway_rooms(2, twin=False), turns=200, text="a long answer " * 40)
    for fmt in ("json", "csv"):
        command = " ".join(voicelog_command("--config", str(config), "backups", "export", "--format", fmt))
        done = subprocess.run(["bash", "-c", f"{command} | head -c 300 >/dev/null; echo \"${{PIPESTATUS[0]}}\""],
                              capture_output=True, text=True, timeout=120, check=False)
        assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
        assert done.stdout.strip() == "141", (fmt, done.stdout, done.stderr)


def test_relative_data_paths_follow_the_config_file_wherever_the_command_runs(tmp_path):
    """`backup_dir: data` means next to the config file: `list` run from elsewhere finds it and says where."""
    box, elsewhere = tmp_path / "box", tmp_path / "elsewhere"
    box.mkdir()
    elsewhere.mkdir()
    config = box / "voicelog.yaml"
    config.write_text("chat_history:\n  backup_dir: data\nlogging:\n  level: WARNING\n")
    simulated = run(config, "simulate", "--sessions", "2", "--turns", "2", cwd=box)
    assert simulated.returncode == 0, simulated.stderr
    assert f"data: spool {box / 'data' / 'spool.db'}, backups {box / 'data'}/" in simulated.stdout
    listed = run(config, "backups", "list", "--json", cwd=elsewhere)
    assert len(json.loads(listed.stdout)) == 2
    assert f"read from spool {box / 'data' / 'spool.db'}" in listed.stderr
    assert not (elsewhere / "data").exists()
    doctor = run(config, "doctor", "--ship-only", cwd=elsewhere)
    assert f"OK   backups  {box / 'data'} writable" in doctor.stdout
    verify = run(config, "backups", "verify", cwd=elsewhere)
    assert f"read from spool {box / 'data' / 'spool.db'}" in verify.stdout


def test_verify_reports_a_repair_as_damage_found_until_acknowledged(tmp_path):
    """A truncated backup, repaired when verify opens the spool, still fails verify, saying what was done."""
    config = config_file(tmp_path)
    [session_id] = capture_sessions(config, gateway_rooms(1, twin=False))
    [backup] = (tmp_path / "backups").glob("*/*.json")
    backup.write_bytes(backup.read_bytes()[: backup.stat().st_size // 2])  # truncated by hand

    first = run(config, "backups", "verify")
    assert first.returncode == 1, first.stdout
    assert "REPAIRED" in first.stdout and "found now, when verify opened the spool" in first.stdout
    assert "1 backup file(s) quarantined" in first.stdout and "1 rewritten from the spool" in first.stdout
    assert "1 problem (of which 1 repair of damage found)" in first.stdout
    assert json.loads(backup.read_text())["session_id"] == session_id, "rewritten whole from the spool"

    again = run(config, "backups", "verify", "--ack")
    assert again.returncode == 1 and "acknowledged 1 repair(s)" in again.stdout
    clean = run(config, "backups", "verify")
    assert clean.returncode == 0, clean.stdout
    assert "OK, 0 warnings" in clean.stdout and "1 earlier repair acknowledged" in clean.stdout
