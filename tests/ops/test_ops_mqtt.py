"""The MQTT fleet channel against the real Mosquitto: retained status, last will, signed commands."""

import asyncio
import hashlib
import hmac
import json
import signal
import time
import uuid

import pytest

from tests.kits.delivery import capture_numbered, contents, eventually
from tests.kits.ops import (
    clear_retained,
    daemon_config,
    ensure_mosquitto_running,
    free_port,
    metric,
    running_daemon,
    subscribed,
    unique_node,
    wait_until_serving,
)
from voicelog.agent.wiring import host_spool
from voicelog.services.config import load_settings
from voicelog.services.ops import CommandRefused, CommandVerifier, sign_command, supervised
from voicelog.services.spool import DeliveryState

MAC = "68:25:dd:ba:39:78"
KEY = "fleet-command-key-for-tests"


@pytest.fixture
def node():
    """A fresh node id on the real broker; its retained status is removed afterwards."""
    ensure_mosquitto_running()
    name = unique_node()
    yield name
    clear_retained(f"voicelog/{name}/status")


def fleet_config(tmp_path, manager, node):
    # Batches never fill and never age here, so only a flush sends the turns.
    return daemon_config(tmp_path, manager,
                         mqtt={"enabled": True, "node_id": node, "command_key": KEY,
                               "status_interval": 1},
                         chat_history={"batch_size": 100, "send_interval": 3600})


def command(node, cmd, **args):
    return {"id": uuid.uuid4().hex, "node": node, "ts": int(time.time() * 1000), "cmd": cmd,
            "args": args}


async def test_status_is_retained_with_backlog_and_manager_health(tmp_path, reference_manager, node):
    """A dashboard subscribing at any time gets the box's online status with its backlog."""
    config = fleet_config(tmp_path, reference_manager, node)
    settings = load_settings(config, environ={})
    spool = host_spool(settings)
    capture_numbered(settings, spool, MAC, 3, end=False)
    topic = f"voicelog/{node}/status"
    async with running_daemon(config) as daemon:
        with subscribed(topic) as first:
            await first.next(topic, where=lambda doc: doc["online"])
        with subscribed(topic) as late:
            status = await late.next(topic)
        assert daemon.process.returncode is None
    spool.close()
    assert status["_retained"] is True
    assert status["online"] is True and status["node"] == node and status["version"]
    assert status["backlog"]["pending"] == 3
    assert status["manager"]["reachable"] is True and status["manager"]["secret_accepted"] is True
    assert status["commands"] is True


async def test_killed_daemon_is_reported_offline_by_its_last_will(tmp_path, reference_manager, node):
    """SIGKILL leaves no chance to say goodbye; the broker publishes the retained offline will."""
    topic = f"voicelog/{node}/status"
    async with running_daemon(fleet_config(tmp_path, reference_manager, node)) as daemon:
        with subscribed(topic) as watcher:
            await watcher.next(topic, where=lambda doc: doc["online"])
            await daemon.stop(signal.SIGKILL)
            will = await watcher.next(topic, where=lambda doc: not doc["online"])
    assert will == {"node": node, "online": False, "version": will["version"],
                    "reason": "connection lost", "ts": will["ts"], "_retained": False}
    with subscribed(topic) as late:
        assert (await late.next(topic))["online"] is False


async def test_signed_flush_delivers_now_and_unsigned_or_replayed_commands_are_refused(
        tmp_path, reference_manager, node):
    """Only a correctly signed, fresh, unused command runs; the rest are answered with a refusal."""
    await reference_manager.bind_device(MAC)
    config = fleet_config(tmp_path, reference_manager, node)
    settings = load_settings(config, environ={})
    spool = host_spool(settings)
    session = capture_numbered(settings, spool, MAC, 3, end=False)
    cmd, result = f"voicelog/{node}/cmd", f"voicelog/{node}/cmd/result"
    async with running_daemon(config) as daemon:
        with subscribed(f"voicelog/{node}/status", result) as operator:
            await operator.next(f"voicelog/{node}/status", where=lambda doc: doc["online"])
            unsigned = command(node, "flush")
            operator.publish(cmd, json.dumps({"body": json.dumps(unsigned)}).encode())
            answer = await operator.next(result, where=lambda doc: doc["id"] == unsigned["id"])
            assert answer["ok"] is False and answer["error"] == "unsigned command"
            forged = command(node, "flush")
            operator.publish(cmd, sign_command("not-the-fleet-key", forged))
            answer = await operator.next(result, where=lambda doc: doc["id"] == forged["id"])
            assert answer["ok"] is False and answer["error"] == "bad signature"
            assert not DeliveryState(spool).backlog()[0].flush_requested, "a refused command must do nothing"

            signed = sign_command(KEY, flush := command(node, "flush"))
            operator.publish(cmd, signed)
            answer = await operator.next(result, where=lambda doc: doc["id"] == flush["id"])
            assert answer["ok"] is True and answer["result"] == {"sessions": 1}

            async def delivered() -> bool:
                return contents(await reference_manager.rows(session)) == ["turn 1", "turn 2", "turn 3"]

            await eventually(delivered, what="the flushed turns at the Manager")
            operator.publish(cmd, signed)
            answer = await operator.next(result, where=lambda doc: doc["id"] == flush["id"])
            assert answer["ok"] is False and answer["error"].startswith("replayed")
        assert "fleet-command-key" not in daemon.logs()
    spool.close()


async def test_signed_replay_requeues_parked_turns_once_the_device_is_bound(
        tmp_path, reference_manager, node):
    """Turns parked for an unbound device go out after `replay` by MAC, once the device is bound."""
    config = fleet_config(tmp_path, reference_manager, node)
    settings = load_settings(config, environ={})
    spool = host_spool(settings)
    session = capture_numbered(settings, spool, MAC, 2)  # ended: delivered (parked) at once
    cmd, result = f"voicelog/{node}/cmd", f"voicelog/{node}/cmd/result"
    async with running_daemon(config):
        await eventually(lambda: spool.status_counts().get("parked") == 2, what="turns parked")
        await reference_manager.bind_device(MAC)
        with subscribed(result) as operator:
            replay = command(node, "replay", mac=MAC.upper(), status="parked")
            operator.publish(cmd, sign_command(KEY, replay))
            answer = await operator.next(result, where=lambda doc: doc["id"] == replay["id"])
        assert answer["ok"] is True and answer["result"] == {"turns": 2, "sessions": 1}

        async def delivered() -> bool:
            return contents(await reference_manager.rows(session)) == ["turn 1", "turn 2"]

        await eventually(delivered, what="replayed turns at the Manager")
    spool.close()


def test_verifier_refuses_stale_misaddressed_and_tampered_commands():
    """Freshness, the node name and every byte of the body are covered by the checks."""
    now = 1_700_000_000_000
    verifier = CommandVerifier(KEY, "box-1", max_age=60, clock=lambda: now)
    fresh = {"id": "a", "node": "box-1", "ts": now - 59_000, "cmd": "status"}
    assert verifier.verify(sign_command(KEY, fresh)).cmd == "status"
    cases = {
        "stale": {**fresh, "id": "b", "ts": now - 61_000},
        "addressed to node 'box-2'": {**fresh, "id": "c", "node": "box-2"},
        "unknown command": {**fresh, "id": "d", "cmd": "rm -rf"},
    }
    for reason, body in cases.items():
        with pytest.raises(CommandRefused, match=reason):
            verifier.verify(sign_command(KEY, body))
    tampered = sign_command(KEY, {**fresh, "id": "e"}).replace(b"status", b"flush")
    with pytest.raises(CommandRefused, match="bad signature"):
        verifier.verify(tampered)


async def test_an_unreachable_broker_neither_blocks_delivery_nor_delays_shutdown(tmp_path, reference_manager):
    """With the broker away, turns are still delivered, /healthz is ok and SIGTERM exits promptly."""
    await reference_manager.bind_device(MAC)
    config = daemon_config(tmp_path, reference_manager,
                           mqtt={"enabled": True, "node_id": unique_node(), "port": free_port(),
                                 "command_key": KEY})
    settings = load_settings(config, environ={})
    spool = host_spool(settings)
    session = capture_numbered(settings, spool, MAC, 4)
    async with running_daemon(config) as daemon:
        await wait_until_serving(daemon)

        async def delivered() -> bool:
            return len(await reference_manager.rows(session)) == 4

        await eventually(delivered, what="delivery despite the broker outage")
        assert (await daemon.get("/healthz"))[0] == 200
        stopping = time.monotonic()
        assert await daemon.stop() == 0
        assert time.monotonic() - stopping < 5
    spool.close()


def hostile_commands(node: str) -> dict[str, bytes]:
    """Messages anyone on the broker can publish, each refused with a reason (issue 12, item 4)."""
    escaped = '{"id": "x\\ud800", "node": "%s", "ts": %d, "cmd": "status"}' % (node, time.time() * 1000)
    signature = hmac.new(KEY.encode(), escaped.encode(), hashlib.sha256).hexdigest()
    return {
        "lone surrogate in the body": b'{"body": "{\\"id\\": \\"\\\\ud800\\", \\"cmd\\": \\"status\\"}", "sig": "00"}',
        "lone surrogate spelled inside a signed body": json.dumps({"body": escaped, "sig": signature}).encode(),
        "not UTF-8": b'{"body": "\xff\xfe", "sig": "00"}',
        "nested 100,000 deep": b"[" * 100_000 + b"]" * 100_000,
        "non-ASCII signature": json.dumps({"body": "{}", "sig": "é" * 64}, ensure_ascii=False).encode(),
        "body of the wrong type": b'{"body": {"cmd": "status"}, "sig": 7}',
        "larger than 64 KiB": json.dumps({"body": "x" * 70_000, "sig": "00"}).encode(),
    }


async def test_hostile_messages_are_refused_one_by_one_and_commands_keep_working(
        tmp_path, reference_manager, node):
    """Malformed, unencodable or huge messages each get a refusal; a signed command after them is served."""
    config = fleet_config(tmp_path, reference_manager, node)
    cmd, result, status_topic = f"voicelog/{node}/cmd", f"voicelog/{node}/cmd/result", f"voicelog/{node}/status"
    async with running_daemon(config) as daemon:
        await wait_until_serving(daemon)
        with subscribed(status_topic, result) as operator:
            await operator.next(status_topic, where=lambda doc: doc["online"])
            for name, payload in hostile_commands(node).items():
                operator.publish(cmd, payload)
                answer = await operator.next(result, where=lambda doc: doc["ok"] is False)
                assert answer["id"] is None and answer["error"], name
            probe = command(node, "status")
            operator.publish(cmd, sign_command(KEY, probe))
            answer = await operator.next(result, where=lambda doc: doc.get("id") == probe["id"])
        assert answer["ok"] is True and answer["result"]["commands"] is True
        assert answer["result"]["command_task_restarts"] == 0
        assert (await daemon.get("/healthz"))[0] == 200
        _, metrics = await daemon.get("/metrics")
        assert metric(metrics, "voicelog_mqtt_commands_total", result="refused") == len(hostile_commands(node))
    logs = daemon.logs()
    assert logs.count('"mqtt_command_refused"') == len(hostile_commands(node))
    assert "Traceback" not in logs


async def test_a_crashing_task_is_restarted_and_its_crash_is_counted():
    """The supervisor logs a crash, tells its owner, and runs the task again after a pause."""
    stop, runs, crashes = asyncio.Event(), [], []

    async def flaky() -> None:
        runs.append(time.monotonic())
        if len(runs) < 3:
            raise RuntimeError("a bug in the task")
        stop.set()

    await asyncio.wait_for(supervised("flaky", flaky, stop, on_crash=crashes.append, first_delay=0.01), 5)
    assert len(runs) == 3 and [str(c) for c in crashes] == ["a bug in the task"] * 2
