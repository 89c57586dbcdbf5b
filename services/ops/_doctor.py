"""``voicelog doctor``: check everything this box needs, one line per check, before it matters.

Each check answers OK, FAIL or SKIP with a detail an operator can act on. Nothing here
creates a Manager row: the secret is checked with a report the Manager cannot store.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from voicelog.services.config import ConfigError, MqttSettings, Settings
from voicelog.services.ops._metrics import SpoolSnapshot, SpoolStats
from voicelog.services.ops._mqtt_fleet import KEEPALIVE, broker_client, node_id_of
from voicelog.services.shipping.manager import ManagerApiClient, Outcome

LIVEKIT_ENV = ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")
LIVEKIT_SCHEMES = ("ws", "wss", "http", "https")
BROKER_TIMEOUT = 5.0


@dataclass(frozen=True)
class Check:
    """The verdict of one check."""

    name: str
    state: str  # OK, WARN (works, but degraded or a person should look), FAIL or SKIP
    detail: str

    def line(self) -> str:
        """One line for the terminal: state, name, detail."""
        return f"{self.state:<4} {self.name:<8} {self.detail}"


def ok(name: str, detail: str) -> Check:
    """A check that passed."""
    return Check(name, "OK", detail)


def fail(name: str, detail: str) -> Check:
    """A check that failed: the detail says what to fix."""
    return Check(name, "FAIL", detail)


def warn(name: str, detail: str) -> Check:
    """A check that passed with something a person should look at (doctor still exits 0)."""
    return Check(name, "WARN", detail)


def skip(name: str, detail: str) -> Check:
    """A check that does not apply to this configuration."""
    return Check(name, "SKIP", detail)


async def run_checks(settings: Settings, environ: Mapping[str, str] | None = None, *,
                     livekit: bool = True) -> list[Check]:
    """Every check, in the order an operator would fix things."""
    environ = os.environ if environ is None else environ
    spool_check, snapshot = check_spool(settings)
    return [
        ok("config", f"{settings.source} parsed" if settings.source != "<defaults>"
           else "no config file: built-in defaults and the environment"),
        check_backup_dir(settings),
        spool_check,
        check_backlog(snapshot),
        await check_manager(settings),
        check_livekit(environ) if livekit else skip("livekit", "not needed (--ship-only)"),
        await asyncio.to_thread(check_mqtt, settings.mqtt),
        await check_memory(settings),
    ]


async def check_memory(settings: Settings) -> Check:
    """Where session starts read memory from; never OK while the Redis it should use is down."""
    from voicelog.services.memory import display_url, redis_health

    memory = settings.memory
    limits = f"last {memory.max_turns} turns / {memory.max_chars} chars within {memory.ttl_hours:g} h"
    if not memory.enabled:
        return skip("memory", "conversation memory is off (memory.enabled: false)")
    if not memory.uses_redis:
        return ok("memory", f"local: read from this host's spool; {limits}")
    url = display_url(memory.redis_url)
    up, detail = await redis_health(settings)
    if not up:
        return warn("memory", f"Redis {url} is DOWN ({detail}): sessions start with this host's spool only "
                              "(no memory from other hosts); turns are pushed when it is back")
    if "reset" in detail:
        return warn("memory", f"Redis {url} {detail}")
    return ok("memory", f"Redis {url} {detail}; {limits}")


def check_backup_dir(settings: Settings) -> Check:
    """The backup directory exists (or can be made) and takes a file."""
    directory = Path(settings.chat_history.backup_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".doctor-"):
            pass
    except OSError as error:
        return fail("backups", f"{directory} is not writable: {error.strerror or error}")
    return ok("backups", f"{directory.resolve()} writable")


def check_spool(settings: Settings) -> tuple[Check, SpoolSnapshot | None]:
    """The spool opens, has a schema this voicelog reads, takes a write and is not full."""
    history = settings.chat_history
    try:
        stats = SpoolStats(history.spool_file, max_bytes=history.spool_max_mb * 1024 * 1024)
    except Exception as error:  # noqa: BLE001 - any failure to open is the finding
        return fail("spool", f"{history.spool_file} cannot be opened: {error}"), None
    try:
        problem = stats.probe_write()
        snapshot = stats.read()
    finally:
        stats.close()
    if problem:
        return fail("spool", f"{history.spool_file}: {problem}"), snapshot
    turns = ", ".join(f"{status} {n}" for status, n in sorted(snapshot.counts.items())) or "none"
    return ok("spool", f"{history.spool_file} writable, {snapshot.spool_bytes / 1024 / 1024:.1f} MiB "
                       f"on disk (cap {history.spool_max_mb} MiB); turns: {turns}"), snapshot


def check_backlog(snapshot: SpoolSnapshot | None) -> Check:
    """Turns that wait on a person (parked, dead-letter) are a warning; a backlog is named with its age."""
    if snapshot is None:
        return skip("backlog", "the spool could not be read")
    counts = snapshot.counts
    parked, dead = counts.get("parked", 0), counts.get("dead_letter", 0)
    pending = counts.get("pending", 0)
    oldest = "" if snapshot.oldest_waiting_ms is None else \
        f", oldest waiting {max(0, snapshot.taken_ms - snapshot.oldest_waiting_ms) / 1000:.0f} s"
    if parked or dead:
        parts = [f"{parked} parked (device not bound, or no valid MAC)" if parked else "",
                 f"{dead} dead-letter (refused by the Manager)" if dead else "",
                 f"{pending} pending" if pending else ""]
        return warn("backlog", "; ".join(p for p in parts if p) + oldest +
                    "; see `voicelog backups list --status parked --status dead-letter`")
    if pending:
        return ok("backlog", f"{pending} pending{oldest}")
    return ok("backlog", "nothing waiting for delivery")


async def check_manager(settings: Settings) -> Check:
    """The Manager answers and accepts our secret (by a report it cannot store)."""
    api = settings.manager_api
    if not api.url:
        return skip("manager", "manager_api.url is not set: capture only, nothing is delivered")
    client = ManagerApiClient(api)
    try:
        result = await client.check_secret()
    finally:
        await client.aclose()
    if result.outcome is Outcome.DELIVERED:
        return ok("manager", f"{api.url} reachable, secret accepted")
    if result.outcome is Outcome.UNAUTHORIZED:
        return fail("manager", f"{api.url} reachable but REFUSES our secret ({result.reason}); "
                               "check manager_api.secret / MANAGER_API_SECRET")
    if result.http_status is None:
        return fail("manager", f"{api.url} unreachable: {result.reason}")
    return fail("manager", f"{api.url} answered but cannot take reports: {result.reason}")


def check_livekit(environ: Mapping[str, str]) -> Check:
    """LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET are set; the URL is well-formed."""
    missing = [name for name in LIVEKIT_ENV if not environ.get(name)]
    if missing:
        return fail("livekit", f"{', '.join(missing)} not set (needed by `voicelog start`)")
    url = urlparse(environ["LIVEKIT_URL"])
    if url.scheme not in LIVEKIT_SCHEMES or not url.hostname:
        return fail("livekit", "LIVEKIT_URL must look like wss://host[:port], "
                               f"got scheme {url.scheme!r} and host {url.hostname!r}")
    return ok("livekit", f"{url.scheme}://{url.hostname}{f':{url.port}' if url.port else ''}, "
                         "key and secret set")


def check_mqtt(settings: MqttSettings) -> Check:
    """When the fleet channel is enabled, the broker accepts our connection."""
    if not settings.enabled:
        return skip("mqtt", "fleet channel disabled (mqtt.enabled: false)")
    try:
        node = node_id_of(settings)
    except ConfigError as error:
        return fail("mqtt", str(error))
    problem = probe_broker(settings, BROKER_TIMEOUT)
    if problem:
        return fail("mqtt", problem)
    commands = "commands enabled" if settings.command_key else "commands disabled (no command_key)"
    return ok("mqtt", f"{settings.host}:{settings.port} accepted us as node {node}; {commands}")


def probe_broker(settings: MqttSettings, timeout: float = BROKER_TIMEOUT) -> str | None:
    """Connect to the broker once (blocking; run it in a thread); None if it accepts us."""
    client = broker_client(settings, f"voicelog-doctor-{os.getpid()}")
    answered, outcome = threading.Event(), {}

    def on_connect(_: Any, __: Any, ___: Any, reason: Any, ____: Any) -> None:
        outcome["reason"] = reason
        answered.set()

    client.on_connect = on_connect
    client.connect_timeout = timeout
    try:
        client.connect(settings.host, settings.port, keepalive=KEEPALIVE)
    except (OSError, ValueError) as error:
        return f"cannot connect to {settings.host}:{settings.port}: {error}"
    client.loop_start()
    try:
        if not answered.wait(timeout):
            return f"no answer from {settings.host}:{settings.port} within {timeout:g} s"
        reason = outcome["reason"]
        return f"broker refused the connection: {reason}" if reason.is_failure else None
    finally:
        client.disconnect()
        client.loop_stop()
