"""Logs of a whole run (capture, delivery through a refused-then-accepted secret, doctor) at INFO
hold neither a secret nor any word a child or the toy said."""

import asyncio
import io
import json
import logging
import subprocess
import sys

import structlog

from tests.kits import REPO
from tests.kits.delivery import eventually
from tests.kits.ops import (
    daemon_config,
    ensure_mosquitto_running,
    running_daemon,
    unique_node,
)
from voicelog.services.config import LoggingSettings
from voicelog.services.ops import add_secrets, configure_logging

SECRET = "log-test-secret-Qx7!pa55"
COMMAND_KEY = "log-test-command-key-Zr9"
MAC = "68:25:dd:ba:39:78"
TURNS = [
    {"user": "My dog Zebulonix ate my homework", "agent": "Oh no, Zebulonix must have been hungry!"},
    {"user": "I live at 42 Quokkastraat", "agent": "Quokkastraat sounds like a lovely street."},
    {"user": "我的秘密是草莓冰淇淋", "agent": "草莓冰淇淋真好吃！"},
]
WORDS = ["Zebulonix", "homework", "Quokkastraat", "草莓冰淇淋", "lovely street"]


def run_cli(config, *args, env=None) -> str:
    """Run a voicelog command as its own process; everything it printed (stdout and stderr)."""
    done = subprocess.run([sys.executable, "main.py", "--config", str(config), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    return done.stdout + done.stderr


async def test_logs_at_info_hold_no_secret_and_no_chat_content(tmp_path, reference_manager):
    """Simulated sessions, delivery paused by a wrong secret then resumed, and doctor: nothing leaks."""
    ensure_mosquitto_running()
    await reference_manager.bind_device(MAC)
    reference_manager.secret = SECRET
    config = daemon_config(tmp_path, reference_manager,
                           mqtt={"enabled": True, "node_id": unique_node(), "command_key": COMMAND_KEY})
    script = tmp_path / "script.jsonl"
    script.write_text(json.dumps({"mac": MAC, "turns": TURNS}, ensure_ascii=False) + "\n")
    outputs = [await asyncio.to_thread(run_cli, config, "simulate", "--script", str(script),
                                       "--no-deliver")]

    reference_manager.secret = "the-manager-was-rotated"  # ours is refused at first
    async with running_daemon(config) as daemon:
        await eventually(lambda: "manager_rejected_secret_delivery_paused" in daemon.logs(),
                         what="delivery paused on the refused secret")
        reference_manager.secret = SECRET

        async def all_delivered() -> bool:
            return len(await reference_manager.rows()) == 2 * len(TURNS)

        await eventually(all_delivered, what="every turn delivered after the secret was fixed")
        assert await daemon.stop() == 0
    outputs.append(daemon.logs())
    outputs.append(await asyncio.to_thread(run_cli, config, "doctor", "--ship-only"))

    stored = " ".join(row["content"] for row in await reference_manager.rows())
    assert all(word in stored for word in WORDS), "the words must have reached the Manager"
    logs = "\n".join(outputs)
    assert "manager_accepts_secret_delivery_resumed" in logs and '"level": "info"' in logs
    assert SECRET not in logs and COMMAND_KEY not in logs
    for word in WORDS + [t[k] for t in TURNS for k in ("user", "agent")]:
        assert word not in logs, f"chat content {word!r} appeared in the logs"


def test_log_lines_mask_secrets_anywhere_and_hide_chat_fields_at_info():
    """A secret inside nested values or a traceback is masked; a content field shows only its length."""
    stream = io.StringIO()
    configure_logging(LoggingSettings(level="DEBUG", format="json"), secrets=[SECRET], stream=stream)
    try:
        add_secrets(COMMAND_KEY)
        log = structlog.get_logger("voicelog.test")
        structlog.contextvars.bind_contextvars(session_id="s-1", seq=7)
        try:
            raise RuntimeError(f"auth failed with {SECRET}")
        except RuntimeError:
            log.exception("boom", detail={"nested": [f"key={COMMAND_KEY}"]})
        log.info("turn_stored", content=TURNS[0]["user"])
        log.debug("turn_text", content=TURNS[0]["agent"])
        logging.getLogger("aiohttp.client").warning("header Bearer %s", SECRET)
    finally:
        structlog.contextvars.clear_contextvars()
        configure_logging(LoggingSettings(level="WARNING", format="json"))
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    text = stream.getvalue()
    assert SECRET not in text and COMMAND_KEY not in text and "***" in text
    assert lines[0]["session_id"] == "s-1" and lines[0]["seq"] == 7
    assert lines[1]["content"] == f"<{len(TURNS[0]['user'])} chars hidden>"
    assert lines[2]["content"] == TURNS[0]["agent"], "DEBUG may show content for local debugging"
    assert lines[3]["event"] == "header Bearer ***"


def test_a_secret_is_masked_where_it_stands_as_a_value_never_inside_other_words():
    """The secret is masked as a header, a field value, in a URL and JSON-escaped; other words keep their letters."""
    secret = "TERM1234"  # a real secret that happens to look like the end of other words
    stream = io.StringIO()
    configure_logging(LoggingSettings(level="INFO", format="json"), secrets=[secret], stream=stream)
    try:
        log = structlog.get_logger("voicelog.test")
        log.info("signal_received", signal="SIGTERM1234", note=f"xTERM1234 and {secret}_suffix")
        log.info("request", header=f"Bearer {secret}", url=f"http://u:{secret}@manager/x?key={secret}&a=1",
                 body=json.dumps({"secret": secret}))
    finally:
        configure_logging(LoggingSettings(level="WARNING", format="json"))
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["signal"] == "SIGTERM1234" and first["note"] == "xTERM1234 and TERM1234_suffix"
    assert second["header"] == "Bearer ***" and second["url"] == "http://u:***@manager/x?key=***&a=1"
    assert second["body"] == '{"secret": "***"}'


def test_a_secret_too_short_to_mask_is_refused_at_start_naming_its_key(tmp_path, capsys):
    """A one-letter secret would mask letters everywhere: refused (exit 2) naming the key or variable."""
    from tests.kits.settings import config_file
    from voicelog.cli.app import main

    config = config_file(tmp_path, manager_api={"url": "http://127.0.0.1:9/xiaozhi", "secret": "S"},
                         mqtt={"command_key": "k"})
    assert main(["--config", str(config), "doctor"]) == 2
    err = capsys.readouterr().err
    assert "configuration error: manager_api.secret is shorter than 8 characters" in err
    assert "configuration error: mqtt.command_key is shorter than 8 characters" in err
    broker = config_file(tmp_path, name="broker.yaml", mqtt={"password": "pw"})
    assert main(["--config", str(broker), "backups", "list", "--json"]) == 0
    assert "warning: mqtt.password is shorter than 8 characters" in capsys.readouterr().err
