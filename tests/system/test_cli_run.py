"""The run commands behave as an operator expects: clear errors, useful summaries, exit codes."""

import json

from tests.kits.settings import config_file as write_config
from voicelog.cli.app import main


def config_file(tmp_path, **sections):
    return str(write_config(tmp_path, name="config.yaml", preset={"logging": {"level": "INFO"}}, **sections))


def test_start_without_livekit_settings_fails_loudly_and_prints_no_secret(tmp_path, capsys, monkeypatch):
    """Missing LIVEKIT_* variables are a clear error with exit 2, not the framework's silent exit 0."""
    for name in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LIVEKIT_API_SECRET", "lk-secret-value")
    monkeypatch.setenv("MANAGER_API_SECRET", "manager-secret-value")
    monkeypatch.setenv("MANAGER_API_URL", "http://127.0.0.1:9/xiaozhi")
    code = main(["--config", config_file(tmp_path), "start"])
    out = capsys.readouterr()
    assert code == 2
    assert "LIVEKIT_URL, LIVEKIT_API_KEY must be set" in out.err
    assert "lk-secret-value" not in out.err + out.out
    assert "manager-secret-value" not in out.err + out.out


def test_simulate_prints_a_json_summary_and_writes_backups(tmp_path, capsys):
    """simulate --json reports every captured turn and leaves one backup file per session."""
    code = main(["--config", config_file(tmp_path), "simulate", "--sessions", "3", "--turns", "4", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert summary["sessions"] == 3 and summary["sessions_failed"] == 0
    assert summary["user_turns"] == 12 and summary["agent_turns"] == 12
    assert summary["lost"] == 0
    assert len(list((tmp_path / "backups").glob("*/*.json"))) == 3


def test_simulate_reads_a_script_file_of_sessions(tmp_path, capsys):
    """--script plays each JSON line as one device session with its own MAC."""
    script = tmp_path / "script.jsonl"
    script.write_text(json.dumps({"mac": "68:25:DD:BA:39:78", "turns": [
        {"user": "hi", "agent": "hello!"}, {"user": "bye now", "agent": "see you"}]}) + "\n")
    code = main(["--config", config_file(tmp_path), "simulate", "--script", str(script), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert (summary["user_turns"], summary["agent_turns"]) == (2, 2)
    assert summary["session_ids"][0].endswith("_6825ddba3978")


def test_simulate_rejects_a_malformed_script_with_the_line_number(tmp_path, capsys):
    """A broken script line is named, and nothing runs."""
    script = tmp_path / "script.jsonl"
    script.write_text('{"mac": "x", "turns": []}\nnot json\n')
    code = main(["--config", config_file(tmp_path), "simulate", "--script", str(script)])
    assert code == 2
    assert "script.jsonl:1" in capsys.readouterr().err


def test_ship_without_a_manager_url_says_so(tmp_path, capsys):
    """ship with no manager_api.url exits 2 with the reason."""
    assert main(["--config", config_file(tmp_path), "ship", "--once"]) == 2
    assert "manager_api.url is not set" in capsys.readouterr().err
