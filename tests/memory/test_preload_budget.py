"""A memory read never holds a session start past ``read_timeout_ms``, whatever the stores do."""

import os
import signal
import time

from tests.kits.delivery import capture_numbered, room_for
from tests.kits.redis import private_redis
from tests.kits.settings import make_settings
from voicelog.agent.memory_writer import flush_memory
from voicelog.agent.preload import preload_memory
from voicelog.agent.wiring import host_spool
from voicelog.services.domain import resolve_identity
from voicelog.services.memory import Outcome, open_memory_reader

MAC = "02:00:00:00:00:77"
SLACK_MS = 60  # event-loop and thread scheduling on a busy 2-core machine


async def test_a_hung_redis_costs_at_most_the_budget_and_the_spool_answers(tmp_path):
    """With Redis stopped mid-answer (SIGSTOP), the session starts within the budget with this host's turns."""
    with private_redis(tmp_path) as server:
        settings = make_settings(tmp_path, memory={"backend": "redis", "redis_url": server.url,
                                                   "read_timeout_ms": 150})
        spool = host_spool(settings)
        reader = open_memory_reader(settings, spool)
        try:
            capture_numbered(settings, spool, MAC, 4)
            assert await flush_memory(settings, spool) is True
            await reader.warm_up()
            os.kill(server.process.pid, signal.SIGSTOP)
            started = time.perf_counter()
            preloaded = await preload_memory(reader, resolve_identity(room_for(MAC, 9), {"device_mac": MAC}, MAC),
                                             settings, {"device_mac": MAC})
            took_ms = (time.perf_counter() - started) * 1000
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
            await reader.aclose()
            spool.close()
    assert took_ms < 150 + SLACK_MS, f"the session start waited {took_ms:.0f} ms"
    assert preloaded.preload.fell_back and preloaded.preload.store == "local"
    assert preloaded.turns == 4 and "did not answer" in preloaded.preload.reason


async def test_a_spool_that_cannot_be_read_starts_the_session_without_memory(tmp_path):
    """A spool damaged under a running job: the session starts at once without memory, saying why."""
    settings = make_settings(tmp_path)
    spool = host_spool(settings)
    reader = open_memory_reader(settings, spool)
    try:
        capture_numbered(settings, spool, MAC, 4)
        spool_file = settings.chat_history.spool_file
        for path in (spool_file, spool_file.with_name(spool_file.name + "-wal")):
            path.write_bytes(b"\0" * path.stat().st_size)  # zero-filled under the open connections
        started = time.perf_counter()
        preloaded = await preload_memory(reader, resolve_identity(room_for(MAC, 9), {"device_mac": MAC}, MAC),
                                         settings, {"device_mac": MAC})
        took_ms = (time.perf_counter() - started) * 1000
    finally:
        await reader.aclose()
        spool.close()
    assert took_ms < 150 + SLACK_MS, f"the session start waited {took_ms:.0f} ms"
    assert preloaded.chat_ctx is None and preloaded.turns == 0
    assert preloaded.preload.outcome is Outcome.ERROR and "spool unreadable" in preloaded.preload.reason
