"""``voicelog talk``: a typed session through the production entrypoint, and what bad agents say."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys

import pytest

from tests.kits import REPO
from tests.kits.agents import MAC, SCRIPTED, TOY_FACTORY, write_module
from tests.kits.delivery import contents
from tests.kits.settings import config_file, make_settings
from voicelog.agent.talk import talk
from voicelog.agent.wiring import host_spool
from voicelog.services.backup import read_backup
from voicelog.services.domain import ChatType

ENV_SCRIPTED = {f"VOICELOG__AGENT__{kind.upper()}": "scripted" for kind in SCRIPTED}


def run_talk(config, stdin: str, *args: str, env: dict[str, str] | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "main.py", "--config", str(config), "talk", "--mac", MAC, *args],
                          input=stdin, capture_output=True, text=True, cwd=REPO, timeout=timeout,
                          env={**os.environ, **(env or {})})


async def test_piped_lines_get_replies_and_the_session_arrives_at_the_manager(tmp_path, reference_manager):
    """printf 'hello\\nwhat is my name?\\n' | voicelog talk prints both replies, exits 0, backs up and delivers."""
    await reference_manager.bind_device(MAC)
    config = config_file(tmp_path, manager=reference_manager, shipper={"drain_timeout": 10})
    # The Manager answers from this test's loop: run talk without blocking it.
    process = await asyncio.create_subprocess_exec(
        sys.executable, "main.py", "--config", str(config), "talk", "--mac", MAC, "--session",
        "talk-test_6825ddba3978", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=REPO, env={**os.environ, **ENV_SCRIPTED})
    stdout, stderr = await asyncio.wait_for(process.communicate(b"hello\nwhat is my name?\n"), 120)
    done = subprocess.CompletedProcess(process.args if hasattr(process, "args") else "talk",
                                       process.returncode, stdout.decode(), stderr.decode())
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["toy> You said: hello. Tell me more!",
                                        "toy> I don't know your name yet. What is it?"]
    backups = list((tmp_path / "backups").glob("*/*.json"))
    assert len(backups) == 1
    backup = read_backup(backups[0])
    assert [(t.chat_type, t.content) for t in backup.turns] == [
        (ChatType.USER, "hello"), (ChatType.AGENT, "You said: hello. Tell me more!"),
        (ChatType.USER, "what is my name?"), (ChatType.AGENT, "I don't know your name yet. What is it?")]
    assert all(t.meta and t.meta.metrics for t in backup.turns)
    assert json.loads(backups[0].read_text())["version"] == 2
    assert contents(await reference_manager.rows("talk-test_6825ddba3978")) == [t.content for t in backup.turns]
    assert "captured 2 child turn(s) and 2 repl(y/ies)" in done.stderr


def test_empty_input_ends_at_once_and_a_bad_mac_is_refused(tmp_path):
    """No lines: exit 0 with an empty session; a MAC that is not one: exit 2 naming it."""
    config = config_file(tmp_path, agent=SCRIPTED)
    assert run_talk(config, "").returncode == 0
    bad = subprocess.run([sys.executable, "main.py", "--config", str(config), "talk", "--mac", "nope"],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert bad.returncode == 2 and "'nope' is not a MAC address" in bad.stderr


def test_the_default_agent_without_credentials_says_how_to_talk_without_them(tmp_path):
    """The built-in inference agent and no LIVEKIT_API_KEY: exit 1, the cause, and the scripted way out."""
    config = config_file(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "VOICELOG__AGENT__"))}
    done = subprocess.run([sys.executable, "main.py", "--config", str(config), "talk", "--mac", MAC],
                          input="hello\n", capture_output=True, text=True, cwd=REPO, timeout=120, env=env)
    assert done.returncode == 1, done.stderr
    assert "voicelog: the session did not start: api_key is required" in done.stderr
    assert "set agent.stt, agent.llm and agent.tts to scripted" in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(("target", "code", "says"), [
    ("no_such_module_xyz:make", 2, "cannot import module 'no_such_module_xyz': ModuleNotFoundError"),
    ("{module}:missing", 2, "has no 'missing'"),
    ("{module}:NOT_A_FUNCTION", 2, "'NOT_A_FUNCTION' is a int, not a function"),
    ("{module}:raises", 1, "raised RuntimeError: the persona service is down"),
    ("{module}:returns_text", 1, "returned str 'an agent'; it must return a livekit Agent"),
])
async def test_a_bad_factory_is_named_with_its_cause_and_loses_no_captured_turn(tmp_path, target, code, says):
    """Missing module or function fails before any session (2); raising or a wrong type fails the session (1)."""
    name = write_module(tmp_path, TOY_FACTORY)
    good = make_settings(tmp_path, agent=SCRIPTED)
    assert await talk(good, MAC, "earlier_6825ddba3978", source=["hello"], out=io.StringIO(),
                      err=io.StringIO()) == 0
    factory = target.format(module=name)
    bad = make_settings(tmp_path, agent={**SCRIPTED, "factory": factory})
    err = io.StringIO()
    assert await talk(bad, MAC, "broken_6825ddba3978", source=["hello"], out=io.StringIO(), err=err) == code
    assert f"agent factory {factory!r}" in err.getvalue() and says in err.getvalue()
    spool = host_spool(good)
    try:
        assert [t.content for t in spool.turns("earlier_6825ddba3978")] == ["hello", "You said: hello. Tell me more!"]
        assert spool.turns("broken_6825ddba3978") == []
    finally:
        spool.close()


def test_start_refuses_a_factory_it_cannot_import_before_taking_sessions(tmp_path):
    """voicelog start with a broken factory exits 2 at once, naming the factory and the cause."""
    config = config_file(tmp_path, agent={"factory": "no_such_module_xyz:make"})
    env = {**os.environ, "LIVEKIT_URL": "ws://127.0.0.1:9", "LIVEKIT_API_KEY": "k", "LIVEKIT_API_SECRET": "s"}
    done = subprocess.run([sys.executable, "main.py", "--config", str(config), "start"], capture_output=True,
                          text=True, cwd=REPO, timeout=60, env=env)
    assert done.returncode == 2
    assert ("configuration error: agent factory 'no_such_module_xyz:make': cannot import module "
            "'no_such_module_xyz'") in done.stderr


def test_ctrl_c_at_a_terminal_flushes_the_session_and_exits_130(tmp_path):
    """Typed at a terminal, then Ctrl-C: the reply is printed, the session backed up, exit 130."""
    import pty
    import select
    import time

    config = config_file(tmp_path, agent=SCRIPTED)
    pid, fd = pty.fork()
    if pid == 0:  # the child: voicelog talk on the terminal
        os.chdir(REPO)
        os.execv(sys.executable, [sys.executable, "main.py", "--config", str(config), "talk", "--mac", MAC])
    seen = b""

    def read_until(marker: bytes, timeout: float = 60) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while marker not in seen and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    seen += os.read(fd, 4096)
                except OSError:
                    return

    read_until(b"child> ")
    os.write(fd, b"hello from a terminal\r")
    read_until(b"toy> ")
    read_until(b"child> ")
    os.write(fd, b"\x03")
    read_until(b"delivery:")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 130, seen.decode(errors="replace")
    assert b"toy> You said: hello from a terminal. Tell me more!" in seen
    backup = read_backup(next((tmp_path / "backups").glob("*/*.json")))
    assert [t.content for t in backup.turns] == ["hello from a terminal",
                                                 "You said: hello from a terminal. Tell me more!"]
    assert backup.session.ended_ms is not None
