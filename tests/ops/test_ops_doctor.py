"""`voicelog doctor`: one line per check, and a failure an operator can act on."""

import asyncio

import pytest

from tests.kits.ops import ensure_mosquitto_running, unique_node
from tests.kits.settings import config_file
from voicelog.cli.app import main

LIVEKIT = {"LIVEKIT_URL": "wss://livekit.example.com", "LIVEKIT_API_KEY": "lk-key",
           "LIVEKIT_API_SECRET": "lk-secret-value"}


@pytest.fixture
def livekit_env(monkeypatch):
    for name, value in LIVEKIT.items():
        monkeypatch.setenv(name, value)


def doctor_config(tmp_path, manager, **sections) -> str:
    return str(config_file(tmp_path, name="doctor.yaml", manager=manager, **sections))


async def run_doctor(config: str, capsys, *extra: str) -> tuple[int, dict[str, str]]:
    """Run doctor in-process; its exit code and its lines by check name."""
    code = await asyncio.to_thread(main, ["--config", config, "doctor", *extra])
    out = capsys.readouterr().out
    lines = {line.split()[1]: line for line in out.splitlines()
             if line.split() and line.split()[0] in ("OK", "WARN", "FAIL", "SKIP")}
    return code, lines


async def test_doctor_passes_every_check_on_a_healthy_box(tmp_path, reference_manager, livekit_env,
                                                          capsys):
    """With a good secret, LiveKit settings and a reachable broker, every line is OK and exit is 0."""
    ensure_mosquitto_running()
    config = doctor_config(tmp_path, reference_manager,
                           mqtt={"enabled": True, "node_id": unique_node(), "command_key": "doctor-command-key"})
    code, lines = await run_doctor(config, capsys)
    assert code == 0, lines
    assert list(lines) == ["config", "backups", "spool", "backlog", "manager", "livekit", "mqtt", "memory"]
    assert all(line.startswith("OK") for line in lines.values()), lines
    assert "secret accepted" in lines["manager"]
    assert "wss://livekit.example.com" in lines["livekit"]
    assert await reference_manager.rows() == [], "the secret check must not store anything"


async def test_doctor_tells_a_refused_secret_from_an_unreachable_manager(
        tmp_path, reference_manager, livekit_env, capsys):
    """A wrong secret and a Manager that is down fail with different, actionable lines."""
    config = doctor_config(tmp_path, reference_manager)
    ours = reference_manager.secret
    reference_manager.secret = "the-managers-new-secret"
    code, refused = await run_doctor(config, capsys)
    assert code == 1
    assert refused["manager"].startswith("FAIL")
    assert "REFUSES our secret" in refused["manager"] and "unreachable" not in refused["manager"]

    reference_manager.secret = ours
    await reference_manager.go_down()
    code, down = await run_doctor(config, capsys)
    assert code == 1
    assert down["manager"].startswith("FAIL") and "unreachable" in down["manager"]
    assert "secret" not in down["manager"]
    for line in (*refused.values(), *down.values()):
        assert ours not in line and "the-managers-new-secret" not in line


async def test_doctor_fails_on_missing_livekit_settings_and_an_absent_broker(
        tmp_path, reference_manager, monkeypatch, capsys):
    """Missing LIVEKIT_* variables and a broker nobody listens on are each a FAIL line naming what to fix."""
    for name in LIVEKIT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LIVEKIT_URL", "not a url")
    config = doctor_config(tmp_path, reference_manager, mqtt={"enabled": True, "port": 1})
    code, lines = await run_doctor(config, capsys)
    assert code == 1
    assert lines["livekit"].startswith("FAIL") and "LIVEKIT_API_KEY, LIVEKIT_API_SECRET" in lines["livekit"]
    assert lines["mqtt"].startswith("FAIL") and "127.0.0.1:1" in lines["mqtt"]
    assert lines["manager"].startswith("OK")
    code, lines = await run_doctor(doctor_config(tmp_path, reference_manager), capsys, "--ship-only")
    assert code == 0 and lines["livekit"].startswith("SKIP") and lines["mqtt"].startswith("SKIP")


async def test_parked_and_dead_letter_turns_are_a_warning_line_not_all_clear(tmp_path, reference_manager, capsys):
    """A backlog that needs a person shows as WARN with its counts; doctor still passes (exit 0) but says so."""
    from tests.kits.box import make_box, mixed_session

    box = make_box(tmp_path, reference_manager)
    await mixed_session(box, reference_manager)
    await reference_manager.bind_device("68:25:dd:ba:39:78")
    box.spool.close()
    code = await asyncio.to_thread(main, ["--config", str(box.config), "doctor", "--ship-only"])
    out = capsys.readouterr().out
    assert code == 0, out
    warning = next(line for line in out.splitlines() if line.startswith("WARN backlog"))
    assert "2 parked (device not bound, or no valid MAC)" in warning and "1 dead-letter" in warning
    assert "2 pending" in warning and "oldest waiting" in warning
    assert out.splitlines()[-1] == "all checks passed; 1 warning: backlog"
