"""The daemon's HTTP endpoint: /metrics follows what happens to turns, /readyz follows the Manager."""

import json
import socket

from tests.kits.delivery import capture_numbered, eventually
from tests.kits.ops import daemon_config, metric, running_daemon, wait_until_serving
from voicelog.agent.wiring import host_spool
from voicelog.services.config import load_settings

MAC = "68:25:dd:ba:39:78"


async def test_metrics_show_turns_captured_and_delivered_as_they_happen(tmp_path, reference_manager):
    """Turns captured while the daemon runs show up as captured, then delivered, with latency and backlog."""
    await reference_manager.bind_device(MAC)
    config = daemon_config(tmp_path, reference_manager)
    settings = load_settings(config, environ={})
    spool = host_spool(settings)
    capture_numbered(settings, spool, MAC, 6, n=1)
    async with running_daemon(config) as daemon:
        await wait_until_serving(daemon)

        async def scrape() -> str:
            status, text = await daemon.get("/metrics")
            assert status == 200
            return text

        async def counted(count: int) -> bool:
            text = await scrape()  # spool figures may lag by the one-second scrape cache
            return all(metric(text, "voicelog_turns_total", event=event) == count
                       for event in ("captured", "delivered"))

        await eventually(lambda: counted(6), what="6 turns captured and delivered")
        capture_numbered(settings, spool, MAC, 4, n=2)
        await eventually(lambda: counted(10), what="4 more turns captured and delivered")
        text = await scrape()
    spool.close()
    assert metric(text, "voicelog_turns_total", event="parked") == 0
    assert metric(text, "voicelog_delivery_attempts_total", outcome="delivered") == 10
    assert metric(text, "voicelog_delivery_latency_seconds_count") == 10
    assert metric(text, "voicelog_backlog_turns", status="pending") == 0
    assert metric(text, "voicelog_oldest_pending_age_seconds") == 0
    assert metric(text, "voicelog_spool_bytes") > 0
    assert metric(text, "voicelog_sessions_active") == 0
    assert metric(text, "voicelog_manager_secret_accepted") == 1
    assert len(await reference_manager.rows()) == 10


async def test_readyz_turns_unready_while_the_manager_is_down_and_ready_when_it_returns(
        tmp_path, reference_manager):
    """/readyz answers 503 naming the unreachable Manager while it is down, 200 once it is back."""
    config = daemon_config(tmp_path, reference_manager)
    async with running_daemon(config) as daemon:
        await wait_until_serving(daemon)

        async def readiness(expected: int) -> bool:
            return (await daemon.get("/readyz"))[0] == expected

        await eventually(lambda: readiness(200), what="ready with the Manager up")
        await reference_manager.go_down()
        await eventually(lambda: readiness(503), what="unready with the Manager down")
        answer = json.loads((await daemon.get("/readyz"))[1])
        assert answer["ready"] is False
        assert "manager unreachable" in answer["reason"]
        assert answer["checks"]["spool"] == "ok"
        assert (await daemon.get("/healthz"))[0] == 200, "a Manager outage is not a reason to restart"
        await reference_manager.come_up()
        await eventually(lambda: readiness(200), what="ready again with the Manager back")


async def test_a_refused_secret_shows_in_readyz_and_metrics_until_it_is_fixed(tmp_path, reference_manager):
    """A rotated Manager secret pauses delivery: /readyz names the secret and the gauge drops, until fixed."""
    await reference_manager.bind_device(MAC)
    config = daemon_config(tmp_path, reference_manager)
    settings = load_settings(config, environ={})
    spool = host_spool(settings)
    async with running_daemon(config) as daemon:
        await wait_until_serving(daemon)
        ours, reference_manager.secret = reference_manager.secret, "rotated-on-the-manager"
        capture_numbered(settings, spool, MAC, 2)

        async def accepted(expected: float) -> bool:
            text = (await daemon.get("/metrics"))[1]
            return metric(text, "voicelog_manager_secret_accepted") == expected

        await eventually(lambda: accepted(0), what="the secret gauge at 0")
        status, body = await daemon.get("/readyz")
        assert status == 503 and "refuses our secret" in json.loads(body)["reason"]
        reference_manager.secret = ours
        await eventually(lambda: accepted(1), what="the secret gauge back at 1")
        assert (await daemon.get("/readyz"))[0] == 200

        async def delivered() -> bool:
            return len(await reference_manager.rows()) == 2

        await eventually(delivered, what="the held turns delivered once the secret is fixed")
    spool.close()


async def test_a_taken_http_address_is_logged_and_delivery_goes_on(tmp_path, reference_manager):
    """If another process holds http.listen, the daemon says so at ERROR and still delivers."""
    await reference_manager.bind_device(MAC)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = f"127.0.0.1:{squatter.getsockname()[1]}"
        config = daemon_config(tmp_path, reference_manager, http={"listen": taken})
        settings = load_settings(config, environ={})
        spool = host_spool(settings)
        session = capture_numbered(settings, spool, MAC, 3)
        async with running_daemon(config) as daemon:

            async def delivered() -> bool:
                return len(await reference_manager.rows(session)) == 3

            await eventually(delivered, what="delivery without the health endpoint")
            assert await daemon.stop() == 0
        spool.close()
    assert "http_listen_failed_running_without_health_endpoint" in daemon.logs()
