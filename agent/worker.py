"""The production LiveKit worker: identify the device, run the voice agent, capture every turn."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import structlog

from voicelog.agent.preload import preload_memory
from voicelog.agent.wiring import attach_capture, host_spool
from voicelog.services.config import ConfigError, Settings, load_settings
from voicelog.services.domain import resolve_identity
from voicelog.services.memory import open_memory_reader

log = structlog.get_logger("voicelog.agent")
LIVEKIT_ENV = ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")
# Job processes run capture's spool writes on the voice loop: wait briefly for the write lock,
# then hold the turn in memory rather than stall the child's conversation.
CAPTURE_BUSY_TIMEOUT_MS = 200


def check_livekit_env(environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Fail loudly when LiveKit settings are missing (the framework would log and exit 0)."""
    missing = [name for name in LIVEKIT_ENV if not environ.get(name)]
    if missing:
        raise ConfigError(f"missing LiveKit settings: {', '.join(missing)} must be set in the "
                          "environment (e.g. the systemd EnvironmentFile)")


def _prewarm(proc: Any) -> None:
    # Each job process parses config itself (same file via VOICELOG_CONFIG, same env).
    settings = load_settings()
    proc.userdata["settings"] = settings
    proc.userdata["spool"] = host_spool(settings, busy_timeout_ms=CAPTURE_BUSY_TIMEOUT_MS)
    # Reads only: a job never writes Redis (the daemon's writer does); the client connects on use.
    proc.userdata["memory"] = open_memory_reader(settings, proc.userdata["spool"])


async def entrypoint(ctx: Any) -> None:
    """Serve one device session: join, identify the toy, start the agent with capture."""
    from livekit.agents import Agent, AgentSession

    settings: Settings = ctx.proc.userdata["settings"]
    memory = ctx.proc.userdata.get("memory")
    # Connect to Redis while the device joins, so the read at start pays no handshake.
    warm = asyncio.ensure_future(memory.warm_up()) if memory is not None else None  # noqa: F841 - kept alive
    await ctx.connect()
    participant = await ctx.wait_for_participant()
    identity = resolve_identity(ctx.job.room.name, participant.attributes, participant.identity)
    structlog.contextvars.bind_contextvars(session_id=identity.session_id)
    session = AgentSession(stt=settings.agent.stt, llm=settings.agent.llm, tts=settings.agent.tts)
    capture = attach_capture(session, identity, settings, ctx.proc.userdata["spool"],
                             attributes=dict(participant.attributes))
    ctx.add_shutdown_callback(capture.close)
    preloaded = await preload_memory(memory, identity, settings, participant.attributes)
    agent = Agent(instructions=settings.agent.instructions, chat_ctx=preloaded.chat_ctx)
    await session.start(agent=agent, room=ctx.room)


def build_server(settings: Settings) -> Any:
    """The AgentServer that runs ``entrypoint`` for each dispatched device room."""
    from livekit.agents import AgentServer

    server = AgentServer(setup_fnc=_prewarm, drain_timeout=int(settings.shipper.drain_timeout) or 1,
                         port=0)
    server.rtc_session(entrypoint, agent_name=settings.agent.agent_name)
    return server
