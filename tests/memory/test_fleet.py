"""Two agent hosts sharing one Redis: a toy that reconnects to the other host still remembers."""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.kits import REPO
from tests.kits.settings import config_file

MAC = "68:25:dd:ba:39:78"
FIRST = [{"user": "My dog is called Biscuit", "agent": "Biscuit is a lovely name for a dog!"},
         {"user": "He likes to run", "agent": "Dogs love running in the park."}]
SECOND = [{"user": "What is my dog called", "agent": "Your dog is called Biscuit."}]


async def voicelog(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python main.py --config CONFIG ARGS`` as its own process."""
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "main.py", "--config", str(config), *args], cwd=REPO,
        capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def host(tmp_path: Path, name: str, redis_space) -> Path:
    """A host: its own data directory and config, the fleet's Redis."""
    root = tmp_path / name
    root.mkdir()
    return config_file(root, name=f"{name}.yaml", memory=redis_space.memory())


def script(tmp_path: Path, name: str, turns: list[dict]) -> Path:
    path = tmp_path / f"{name}.jsonl"
    path.write_text(json.dumps({"mac": MAC, "turns": turns}, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


async def test_a_device_captured_on_host_a_is_remembered_by_its_next_session_on_host_b(tmp_path, redis_space):
    """Host A's simulate process pushes its turns to Redis before it exits; host B's next session of the
    device starts with them, although B's own spool has never seen the device."""
    host_a, host_b = host(tmp_path, "a", redis_space), host(tmp_path, "b", redis_space)
    ran_a = await voicelog(host_a, "simulate", "--script", str(script(tmp_path, "first", FIRST)), "--json")
    assert ran_a.returncode == 0, ran_a.stderr[-2000:]
    assert json.loads(ran_a.stdout)["memory_flushed"] is True

    ran_b = await voicelog(host_b, "simulate", "--script", str(script(tmp_path, "second", SECOND)), "--json")
    assert ran_b.returncode == 0, ran_b.stderr[-2000:]
    session = json.loads(ran_b.stdout)["per_session"][0]
    assert session["mac"] == MAC and session["preloaded_turns"] == 4
    assert session["memory"]["store"] == "redis" and not session["memory"]["fell_back"]

    shown = await voicelog(host_b, "memory", "show", "--mac", MAC, "--json")
    assert shown.returncode == 0, shown.stderr
    turns = json.loads(shown.stdout)["turns"]
    expected = [t[k] for t in FIRST + SECOND for k in ("user", "agent")]
    assert [t["content"] for t in turns] == expected
    assert [t["chat_type"] for t in turns] == [1, 2] * 3
    assert all(t["interrupted"] is False for t in turns)
    # Host A never saw the second session: it reads B's turns through Redis too.
    on_a = json.loads((await voicelog(host_a, "memory", "show", "--mac", MAC, "--json")).stdout)
    assert [t["content"] for t in on_a["turns"]] == expected
