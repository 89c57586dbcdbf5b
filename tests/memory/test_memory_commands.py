"""`simulate` carries memory between a device's sessions; `memory show|forget` answer in bounded time."""

import asyncio
import json
import os
import subprocess
import sys
import time

import pytest

from tests.kits import REPO
from tests.kits.redis import private_redis
from tests.kits.settings import config_file, make_settings
from voicelog.agent.simulation.run import SimulatedDevice, simulate
from voicelog.agent.wiring import host_spool
from voicelog.cli.app import main

MAC, OTHER = "68:25:dd:ba:39:78", "02:00:00:00:00:05"
LONG = [{"user": f"question {i}", "agent": f"answer {i} " + " ".join(["la"] * 30)} for i in range(4)]


async def voicelog(config, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(subprocess.run, [sys.executable, "main.py", "--config", str(config), *args],
                                   cwd=REPO, capture_output=True, text=True, timeout=timeout,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})


async def test_simulate_runs_one_devices_sessions_in_turn_and_others_beside_them(tmp_path):
    """Sessions of one MAC run one after another and each starts with what the last left; another
    device's session runs at the same time; the JSON summary lists what each session started with."""
    settings = make_settings(tmp_path)
    devices = [SimulatedDevice(MAC, tuple(LONG)), SimulatedDevice(OTHER, tuple(LONG)),
               SimulatedDevice(MAC, ({"user": "remember me?", "agent": "yes"},)),
               SimulatedDevice("not-a-mac", ({"user": "who am I", "agent": "a mystery"},))]
    summary = await simulate(settings, devices, time_scale=0.05, deliver=False)
    assert summary.sessions_failed == 0
    preloaded = [(p["mac"], p["preloaded_turns"]) for p in summary.per_session]
    assert preloaded == [(MAC, 0), (OTHER, 0), (MAC, 8), ("unknown", 0)]
    assert summary.per_session[3]["memory"] is None, "no valid MAC: no memory"
    assert summary.preloaded_turns == 8
    spool = host_spool(settings)
    try:
        first, other, second = (spool.session(p["session_id"]) for p in summary.per_session[:3])
    finally:
        spool.close()
    assert second.started_ms >= first.ended_ms, "the device's second session waited for its first"
    assert other.started_ms < first.ended_ms, "another device ran at the same time"


async def test_simulate_text_summary_says_how_much_was_remembered(tmp_path, capsys):
    """The text summary of a `simulate --script` run names the total of preloaded turns."""
    config = config_file(tmp_path)
    script = tmp_path / "script.jsonl"
    script.write_text("\n".join(json.dumps({"mac": MAC, "turns": LONG[:1]}) for _ in range(3)) + "\n")
    code = await asyncio.to_thread(main, ["--config", str(config), "simulate", "--script", str(script)])
    assert code == 0
    assert "memory: 6 turns preloaded into 2 of 3 sessions" in capsys.readouterr().out


async def test_memory_show_falls_back_to_the_spool_in_bounded_time_when_redis_is_down(tmp_path):
    """With the memory Redis dead, `memory show` still prints this host's memory, says it fell back,
    exits 0 and takes well under its 2 s budget; `memory forget` then exits 1, saying Redis was not told."""
    with private_redis(tmp_path) as server:
        config = config_file(tmp_path, memory={"backend": "redis", "redis_url": server.url})
        settings = make_settings(tmp_path, memory={"backend": "redis", "redis_url": server.url})
        await simulate(settings, [SimulatedDevice(MAC, tuple(LONG[:1]))], time_scale=0.02, deliver=False)
        server.kill()
        started = time.monotonic()
        shown = await voicelog(config, "memory", "show", "--mac", MAC, "--json")
        took = time.monotonic() - started
    assert shown.returncode == 0, shown.stderr
    body = json.loads(shown.stdout)
    assert body["store"] == "local" and body["fell_back"] and "redis unreachable" in body["reason"]
    assert [t["content"] for t in body["turns"]] == [LONG[0]["user"], LONG[0]["agent"]]
    assert took < 10, f"memory show took {took:.1f} s"
    forgot = await voicelog(config, "memory", "forget", "--mac", MAC)
    assert forgot.returncode == 1 and "Redis: unreachable" in forgot.stdout


def test_memory_commands_refuse_bad_input_and_say_when_nothing_can_be_read(tmp_path, capsys):
    """A bad MAC exits 2 naming the problem; a spool that cannot be opened exits 1 saying so."""
    config = str(config_file(tmp_path))
    with pytest.raises(SystemExit) as bad:
        main(["--config", config, "memory", "show", "--mac", "68:25:dd"])
    assert bad.value.code == 2 and "is not a MAC address" in capsys.readouterr().err
    (tmp_path / "a-directory").mkdir()
    broken = config_file(tmp_path, name="broken.yaml", chat_history={"spool_path": str(tmp_path / "a-directory")})
    for action in ("show", "forget"):
        assert main(["--config", str(broken), "memory", action, "--mac", MAC]) == 1
        assert "cannot open the spool" in capsys.readouterr().err
    opted = config_file(tmp_path, name="opted.yaml", chat_history={"opt_out_macs": [MAC]})
    assert main(["--config", str(opted), "memory", "show", "--mac", MAC, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["turns"] == []
