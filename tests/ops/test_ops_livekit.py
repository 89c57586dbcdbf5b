"""`voicelog start` is ready only while its LiveKit worker is registered, and says where and why not."""

import json
import os
import signal

from tests.kits.delivery import eventually
from tests.kits.fake_livekit import FakeLiveKit
from tests.kits.ops import free_port, running_daemon, wait_until_serving
from tests.kits.settings import config_file

LIVEKIT_KEYS = {"LIVEKIT_API_KEY": "lk-test-key", "LIVEKIT_API_SECRET": "lk-test-secret-0123456789abcdef"}


def start_config(tmp_path):
    """A capture-only daemon (no Manager configured) with its ops endpoint on a free port."""
    return config_file(tmp_path, name="start.yaml",
                       http={"listen": f"127.0.0.1:{free_port()}"}, logging={"level": "INFO", "format": "json"})


def log_lines(daemon) -> list[dict]:
    return [json.loads(line) for line in daemon.logs().splitlines() if line.startswith("{")]


async def readiness(daemon) -> tuple[int, dict]:
    status, body = await daemon.get("/readyz")
    return status, json.loads(body)


async def test_unreachable_livekit_is_not_ready_names_url_and_cause_and_stops_without_errors(tmp_path):
    """A closed LIVEKIT_URL: /readyz 503 with the URL and cause, no daemon_ready, a calm group stop."""
    url = f"ws://127.0.0.1:{free_port()}"  # nothing listens there
    env = {"LIVEKIT_URL": url, **LIVEKIT_KEYS}
    async with running_daemon(start_config(tmp_path), env=env, command="start", own_group=True) as daemon:
        await wait_until_serving(daemon, timeout=60)

        async def refused() -> bool:
            status, body = await readiness(daemon)
            return status == 503 and "Connect call failed" in body.get("reason", "")

        await eventually(refused, timeout=60, what="/readyz naming the refused connection")
        status, body = await readiness(daemon)
        assert body["checks"]["livekit"]["registered"] is False
        assert f"livekit worker not registered: cannot connect to {url}" in body["reason"]
        assert (await daemon.get("/healthz"))[0] == 200, "unready, but alive: a restart would not help"
        retries = [line for line in log_lines(daemon) if line["event"].startswith("failed to connect to livekit")]
        assert retries and retries[0]["url"] == url and "Connect call failed" in retries[0]["error"]
        # Like `timeout`, `kill -- -PGID` or a container stop: the whole process group gets SIGTERM.
        os.killpg(daemon.process.pid, signal.SIGTERM)
        assert await daemon.stop(timeout=60) == 0
    lines = log_lines(daemon)
    assert not [line for line in lines if line["event"] == "daemon_ready"], "never ready without LiveKit"
    assert [line["event"] for line in lines if line["level"] == "error"] == []


async def test_ready_once_registered_unready_when_the_connection_drops_and_ready_again(tmp_path):
    """Registered with LiveKit: ready, saying delivery is off; a dropped link turns it unready until re-registered."""
    async with FakeLiveKit() as livekit:
        env = {"LIVEKIT_URL": livekit.url, **LIVEKIT_KEYS}
        async with running_daemon(start_config(tmp_path), env=env, command="start") as daemon:
            await wait_until_serving(daemon, timeout=60)

            async def ready() -> bool:
                return (await readiness(daemon))[0] == 200

            await eventually(ready, timeout=60, what="ready once registered")
            body = (await readiness(daemon))[1]
            assert body["checks"]["livekit"] == {"registered": True, "url": livekit.url, "reason": None,
                                                 "worker_id": livekit.registered[-1]}
            ready_lines = [line for line in log_lines(daemon) if line["event"] == "daemon_ready"]
            assert ready_lines[0]["doing"] == "capturing; delivery off (no manager_api.url)"

            livekit.refuse = True
            await livekit.drop()

            async def unready() -> bool:
                return (await readiness(daemon))[0] == 503

            await eventually(unready, timeout=30, what="unready after the connection dropped")
            assert "livekit_connection_lost" in daemon.logs()
            livekit.refuse = False
            await eventually(ready, timeout=60, what="ready again after re-registering")
            assert len(livekit.registered) == 2
            assert await daemon.stop(timeout=60) == 0
