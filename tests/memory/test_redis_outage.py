"""Redis killed mid-run and restarted empty: capture never stalls, nothing is lost, preload falls back,
/metrics and doctor say so, and Redis catches up by itself."""

import asyncio
import time

from tests.kits.delivery import eventually, room_for
from tests.kits.ops import daemon_config, metric, running_daemon, wait_until_serving
from tests.kits.redis import private_redis
from tests.kits.settings import config_file
from voicelog.agent.memory_writer import flush_memory
from voicelog.agent.wiring import host_spool
from voicelog.cli.app import main
from voicelog.services.backup import BackupWriter
from voicelog.services.capture import ChatHistoryService
from voicelog.services.config import load_settings
from voicelog.services.domain import ChatType, resolve_identity
from voicelog.services.memory import open_memory_reader

MAC, OTHER = "68:25:dd:ba:39:78", "68:25:dd:00:00:07"


class Toy:
    """One device session captured in this process, timing every durable write."""

    def __init__(self, settings, spool, mac: str, n: int) -> None:
        identity = resolve_identity(room_for(mac, n), {"device_mac": mac}, mac)
        self.service = ChatHistoryService(spool, identity, settings.chat_history,
                                          backups=BackupWriter(settings.chat_history.backup_dir))
        self.write_ms: list[float] = []

    def say(self, *texts: str) -> None:
        for text in texts:
            kind = ChatType.USER if len(self.write_ms) % 2 == 0 else ChatType.AGENT
            started = time.perf_counter()
            self.service.add_message(kind, text)
            self.write_ms.append((time.perf_counter() - started) * 1000)


async def test_redis_killed_mid_run_stalls_nothing_loses_nothing_and_catches_up(tmp_path, reference_manager):
    """The daemon's writer keeps turns in the spool while Redis is dead, sessions start from the spool,
    and once Redis is back (empty) every turn is in it again."""
    await reference_manager.bind_device(MAC)
    with private_redis(tmp_path) as redis_server:
        config = daemon_config(tmp_path, reference_manager,
                               memory={"backend": "redis", "redis_url": redis_server.url})
        settings = load_settings(config, environ={})
        spool = host_spool(settings)
        reader = open_memory_reader(settings, spool)
        async with running_daemon(config) as daemon:
            await wait_until_serving(daemon)

            async def scrape(name: str) -> float | None:
                return metric((await daemon.get("/metrics"))[1], name)

            async def in_redis(mac: str, count: int) -> bool:
                preload = await reader.read(mac)
                return preload.store == "redis" and len(preload.turns) == count

            first = Toy(settings, spool, MAC, 1)
            first.say("Before the outage 1", "reply 1", "Before the outage 2")
            started = time.monotonic()
            await eventually(lambda: in_redis(MAC, 3), timeout=5, what="the turns in Redis")
            reached_ms = (time.monotonic() - started) * 1000
            assert reached_ms < 1000, f"a turn took {reached_ms:.0f} ms to reach Redis"
            await eventually(lambda: _equals(scrape("voicelog_memory_redis_up"), 1), what="redis up")

            redis_server.kill()
            during = Toy(settings, spool, OTHER, 2)
            for i in range(20):
                first.say(f"During the outage {i}")
                during.say(f"Other toy during the outage {i}")
            preload = await reader.read(MAC)
            assert preload.fell_back and preload.store == "local" and preload.elapsed_ms < 150
            assert [r.text for r in preload.turns][-1] == "During the outage 19"
            reader.record("outage-session", preload)
            await eventually(lambda: _equals(scrape("voicelog_memory_redis_up"), 0), what="redis down in metrics")
            await eventually(lambda: _above(scrape("voicelog_memory_redis_lag_seconds"), 0), what="lag grows")
            await eventually(lambda: _above(scrape("voicelog_memory_redis_fallbacks_total"), 0),
                             what="fallback counted")
            assert max(first.write_ms + during.write_ms) < 100, "capture waited on something"

            redis_server.start()  # back, and empty: it had no persistence
            await eventually(lambda: in_redis(MAC, 20), timeout=15, what="Redis refilled from the spool")
            await eventually(lambda: in_redis(OTHER, 20), timeout=5, what="the other toy too")
            await eventually(lambda: _equals(scrape("voicelog_memory_redis_lag_seconds"), 0), what="lag gone")
            assert await scrape("voicelog_memory_redis_up") == 1
        await reader.aclose()
        assert len(spool.turns(first.service.session_id)) == 23
        assert len(spool.turns(during.service.session_id)) == 20
        spool.close()


async def _equals(value, expected) -> bool:
    return await value == expected


async def _above(value, floor) -> bool:
    found = await value
    return found is not None and found > floor


async def test_doctor_warns_naming_the_url_and_the_fallback_while_the_memory_redis_is_down(tmp_path, capsys):
    """doctor's memory line is OK while Redis answers and a WARN naming the URL and the fallback when not."""
    with private_redis(tmp_path) as redis_server:
        config = str(config_file(tmp_path, memory={"backend": "redis", "redis_url": redis_server.url}))
        settings = load_settings(config, environ={})
        spool = host_spool(settings)
        assert await flush_memory(settings, spool) is True  # what the daemon's writer does at start
        spool.close()

        async def memory_line() -> tuple[int, str]:
            code = await asyncio.to_thread(main, ["--config", config, "doctor", "--ship-only"])
            lines = [line for line in capsys.readouterr().out.splitlines() if " memory " in f" {line} "]
            return code, lines[0]

        _, up = await memory_line()
        assert up.startswith("OK") and redis_server.url in up
        redis_server.kill()
        started = time.monotonic()
        code, down = await memory_line()
        assert down.startswith("WARN") and redis_server.url in down and "spool" in down
        assert code == 0 and time.monotonic() - started < 10
