"""The production LiveKit worker: identify the device, run its agent (yours or the built-in), capture every turn.

``entrypoint`` is the one function ``voicelog start`` registers with LiveKit; ``voicelog talk``
and the tests run the very same function through livekit's own job machinery (a fake job in a
thread, no server). What differs is only what the prewarm (``setup_fnc``) puts in the job
process's ``userdata``: a ``JobHost`` with the settings, the spool, the imported factory, the
memory reader and, for talk and tests, a ``SessionWatcher`` that sees the session.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from voicelog.agent.factory import (
    BUILT_IN,
    AgentFactory,
    FactoryContext,
    FactoryError,
    agent_parts,
    load_factory,
    session_for,
    with_memory,
)
from voicelog.agent.models import import_plugins
from voicelog.agent.wiring import (
    MemoryLoader,
    Remembered,
    StoreLoader,
    attach_capture,
    host_spool,
    open_memory,
    preload_memory,
)
from voicelog.services.config import ConfigError, Settings, load_settings
from voicelog.services.domain import DeviceIdentity, resolve_identity
from voicelog.services.spool import Spool

log = structlog.get_logger("voicelog.agent")
LIVEKIT_ENV = ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")
HOST_KEY = "voicelog.host"  # where the prewarm leaves the JobHost in proc.userdata
# Job processes run capture's spool writes on the voice loop: wait briefly for the write lock,
# then hold the turn in memory rather than stall the child's conversation.
CAPTURE_BUSY_TIMEOUT_MS = 200


def check_livekit_env(environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Fail loudly when LiveKit settings are missing (the framework would log and exit 0)."""
    missing = [name for name in LIVEKIT_ENV if not environ.get(name)]
    if missing:
        raise ConfigError(f"missing LiveKit settings: {', '.join(missing)} must be set in the "
                          "environment (e.g. the systemd EnvironmentFile)")


@dataclass(frozen=True)
class ServedSession:
    """One device session as the entrypoint started it."""

    ctx: Any  # livekit JobContext
    loop: asyncio.AbstractEventLoop  # the job's own loop (a thread of its own in talk and tests)
    identity: DeviceIdentity
    remembered: Remembered
    session: Any  # livekit AgentSession, started
    agent: Any  # livekit Agent
    capture: Any  # ChatCapture, or OptedOutCapture


class SessionWatcher(Protocol):
    """What talk and tests learn from inside a job; production has none."""

    def prepare(self, served: ServedSession) -> None:
        """The session is built and captured but not started: set its audio I/O here."""

    def started(self, served: ServedSession) -> None:
        """The session has started."""

    def failed(self, error: BaseException) -> None:
        """The session could not start (the job then ends)."""


@dataclass
class JobHost:
    """What a job process holds for all its sessions, made once by the prewarm."""

    settings: Settings
    spool: Spool
    factory: AgentFactory | None  # None: the built-in agent
    memory: MemoryLoader | None = None
    watcher: SessionWatcher | None = None
    on_flush: Callable[[str], None] | None = None  # wakes an in-process shipper (talk)


def prepare_agent(settings: Settings) -> AgentFactory | None:
    """Import the factory and the configured plugins; FactoryError or ModelSetupError says why not.

    Call it on the main thread before any job (livekit registers plugins there only): ``start``
    fails at once, before it accepts sessions, when the factory cannot be imported.
    """
    import_plugins(settings.agent)
    return load_factory(settings.agent.factory) if settings.agent.factory else None


def make_host(settings: Settings, *, watcher: SessionWatcher | None = None,
              on_flush: Callable[[str], None] | None = None) -> JobHost:
    """A job process's JobHost: its spool connection, the factory imported, the memory reader."""
    spool = host_spool(settings, busy_timeout_ms=CAPTURE_BUSY_TIMEOUT_MS)
    return JobHost(settings, spool, prepare_agent(settings), open_memory(settings, spool),
                   watcher, on_flush)


def _prewarm(proc: Any) -> None:
    # Each job process parses config itself (same file via VOICELOG_CONFIG, same env).
    proc.userdata[HOST_KEY] = make_host(load_settings())


async def entrypoint(ctx: Any) -> None:
    """Serve one device session: join, identify the toy, preload memory, run its agent with capture."""
    host: JobHost = ctx.proc.userdata[HOST_KEY]
    try:
        served = await _serve(ctx, host)
    except BaseException as error:
        if host.watcher is not None:
            host.watcher.failed(error)
        raise
    if host.watcher is not None:
        host.watcher.started(served)


async def _serve(ctx: Any, host: JobHost) -> ServedSession:
    settings = host.settings
    # Connect to the memory store while the device joins, so the read at start pays no handshake.
    warming = asyncio.ensure_future(host.memory.warm_up()) if isinstance(host.memory, StoreLoader) else None
    try:
        await ctx.connect()
        participant = await ctx.wait_for_participant()
        attributes = {str(k): str(v) for k, v in dict(participant.attributes).items()}
        identity = resolve_identity(ctx.job.room.name, attributes, participant.identity)
        structlog.contextvars.bind_contextvars(session_id=identity.session_id)
        remembered = await preload_memory(host.memory, identity, settings, attributes)
    finally:
        if warming is not None:  # done by now, or only a handshake the read did itself
            warming.cancel()
            await asyncio.wait([warming])
    context = FactoryContext(identity, settings, remembered.chat_ctx, remembered.turns, attributes, ctx)
    spec = settings.agent.factory or BUILT_IN
    try:
        parts = await agent_parts(host.factory, spec, context)
        session = session_for(parts, settings)
    except FactoryError as error:
        log.error("agent_factory_failed_session_not_started", factory=spec, error=str(error))
        raise
    await with_memory(parts.agent, remembered.chat_ctx)
    capture = attach_capture(session, identity, settings, host.spool, attributes=attributes,
                             on_flush=host.on_flush)
    ctx.add_shutdown_callback(capture.close)  # flushes the session when the job ends
    served = ServedSession(ctx, asyncio.get_running_loop(), identity, remembered, session, parts.agent,
                           capture)
    if host.watcher is not None:
        host.watcher.prepare(served)
    await session.start(agent=parts.agent, room=ctx.room, record=False)
    log.info("session_started", factory=spec, remembered_turns=remembered.turns)
    return served


def build_server(settings: Settings, *, setup_fnc: Callable[[Any], None] = _prewarm, **options: Any) -> Any:
    """The AgentServer that runs ``entrypoint`` for each dispatched device room."""
    from livekit.agents import AgentServer

    options.setdefault("drain_timeout", int(settings.shipper.drain_timeout) or 1)
    server = AgentServer(setup_fnc=setup_fnc, port=0, **options)
    server.rtc_session(entrypoint, agent_name=settings.agent.agent_name)
    return server
