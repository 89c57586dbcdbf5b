"""Start a device's session with what it remembers: read memory in budget, build the Agent's chat context.

Shared by the production entrypoint and ``simulate``. The preloaded turns go into the Agent's
initial chat context, which livekit-agents never announces through ``conversation_item_added``:
capture never sees them, so they are never stored, backed up or delivered a second time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import structlog
from livekit.agents import llm

from voicelog.handlers.opt_out import opted_out
from voicelog.services.config import Settings
from voicelog.services.domain import DeviceIdentity
from voicelog.services.memory import MEMORY_ITEM_PREFIX, MemoryReader, Preload, RememberedTurn

log = structlog.get_logger("voicelog.memory")
AGENT_ID_ATTRIBUTE = "agent_id"  # a gateway may tell the agent a device is bound to


@dataclass(frozen=True)
class Preloaded:
    """What a session starts with: the chat context for ``Agent(chat_ctx=...)`` and how it was read."""

    chat_ctx: llm.ChatContext | None = None
    preload: Preload | None = None  # None: memory off, no valid MAC, or the device opted out

    @property
    def turns(self) -> int:
        """How many turns the agent starts with."""
        return len(self.preload.turns) if self.preload else 0


async def preload_memory(reader: MemoryReader | None, identity: DeviceIdentity, settings: Settings,
                         attributes: Mapping[str, str] | None = None) -> Preloaded:
    """Read the device's memory before ``session.start``; never raises, never exceeds the budget."""
    if reader is None or not identity.mac_valid:
        return Preloaded()
    if opted_out(identity.mac, dict(attributes or {}), settings.chat_history.opt_out_macs):
        return Preloaded()  # an opted-out device is neither read nor written
    agent_id = (attributes or {}).get(AGENT_ID_ATTRIBUTE) or None
    try:
        result = await reader.read(identity.mac, agent_id=agent_id)
    except Exception:  # noqa: BLE001 - memory must never break a session start
        log.exception("memory_preload_failed", session_id=identity.session_id)
        return Preloaded()
    log.info("memory_preloaded", session_id=identity.session_id, turns=len(result.turns),
             outcome=result.outcome.value, store=result.store, fell_back=result.fell_back,
             elapsed_ms=round(result.elapsed_ms, 2), reason=result.reason)
    # Counted for /metrics from a thread: a busy spool must not hold the session's start.
    asyncio.get_running_loop().run_in_executor(None, reader.record, identity.session_id, result)
    return Preloaded(chat_context(result.turns) if result.turns else None, result)


def chat_context(turns: Sequence[RememberedTurn], *, now: float | None = None) -> llm.ChatContext:
    """The remembered turns as a chat context, with their original times, clamped before ``now``.

    The clamp matters: the context places a new message by its time, so a turn stamped in the
    future (another host's clock ahead) would land after the live conversation. Order is kept.
    """
    ceiling = (time.time() if now is None else now) - 0.001
    stamps: list[float] = []
    for remembered in reversed(turns):
        stamp = min(remembered.turn.created_ms / 1000, ceiling)
        stamps.append(stamp)
        ceiling = stamp - 0.000001
    ctx = llm.ChatContext.empty()
    for remembered, stamp in zip(turns, reversed(stamps), strict=True):
        ctx.add_message(role=remembered.role, content=remembered.text, interrupted=remembered.turn.interrupted,
                        created_at=stamp, id=f"{MEMORY_ITEM_PREFIX}{remembered.turn.ref}")
    return ctx
