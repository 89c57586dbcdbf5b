"""The production LiveKit worker: identify the device, run the voice agent, capture every turn."""

from __future__ import annotations

import os
from typing import Any

import structlog

from voicelog.agent.wiring import attach_capture, host_spool
from voicelog.services.config import ConfigError, Settings, load_settings
from voicelog.services.domain import resolve_identity

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


async def entrypoint(ctx: Any) -> None:
    """Serve one device session: join, identify the toy, start the agent with capture."""
    from livekit.agents import Agent, AgentSession

    settings: Settings = ctx.proc.userdata["settings"]
    await ctx.connect()
    participant = await ctx.wait_for_participant()
    identity = resolve_identity(ctx.job.room.name, participant.attributes, participant.identity)
    structlog.contextvars.bind_contextvars(session_id=identity.session_id)
    session = AgentSession(stt=settings.agent.stt, llm=settings.agent.llm, tts=settings.agent.tts)
    capture = attach_capture(session, identity, settings, ctx.proc.userdata["spool"],
                             attributes=dict(participant.attributes))
    ctx.add_shutdown_callback(capture.close)
    await session.start(agent=Agent(instructions=settings.agent.instructions), room=ctx.room)


def build_server(settings: Settings) -> Any:
    """The AgentServer that runs ``entrypoint`` for each dispatched device room."""
    from livekit.agents import AgentServer

    server = AgentServer(setup_fnc=_prewarm, drain_timeout=int(settings.shipper.drain_timeout) or 1,
                         port=0)
    server.rtc_session(entrypoint, agent_name=settings.agent.agent_name)
    return server
