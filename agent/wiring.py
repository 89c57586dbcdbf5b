"""Wire capture and memory onto a session: the one path shared by production jobs, talk and simulate."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from voicelog.handlers.audio_tap import AudioTap
from voicelog.handlers.chat_capture import ChatCapture
from voicelog.handlers.opt_out import OptedOutCapture, opted_out
from voicelog.services.backup import BackupWriter
from voicelog.services.capture import ChatHistoryService, ClipKeeper
from voicelog.services.config import Durability, Settings
from voicelog.services.domain import DeviceIdentity
from voicelog.services.sealing import cipher_from_settings
from voicelog.services.spool import Spool, open_spool

log = structlog.get_logger("voicelog.agent")


def attach_capture(session: Any, identity: DeviceIdentity, settings: Settings, spool: Spool, *,
                   attributes: dict[str, str] | None = None,
                   on_flush: Callable[[str], None] | None = None) -> ChatCapture | OptedOutCapture:
    """Create the session's ChatHistoryService and hook its handlers onto ``session``."""
    if opted_out(identity.mac, attributes, settings.chat_history.opt_out_macs):
        # Nothing of an opted-out device is written anywhere: no spool row, no backup file.
        return OptedOutCapture(identity.session_id).attach(session)
    if identity.disagreement:
        log.warning("device_mac_sources_disagree", session_id=identity.session_id,
                    chosen=identity.mac_source, others=[s for s, _ in identity.disagreement])
    if not identity.mac_valid:
        log.warning("session_without_valid_mac_captured_anyway", session_id=identity.session_id)
    history = settings.chat_history
    backups = BackupWriter(history.backup_dir, fsync=history.durability == Durability.POWER)
    service = ChatHistoryService(spool, identity, history, backups=backups, on_flush=on_flush)
    return ChatCapture(service, _audio_tap(session, identity, settings, spool)).attach(session)


def _audio_tap(session: Any, identity: DeviceIdentity, settings: Settings, spool: Spool) -> AudioTap | None:
    """The session's audio tap when audio.enabled (off: no frame is teed, nothing cut, stored or sent)."""
    if not settings.audio.enabled:
        return None
    try:
        return AudioTap(ClipKeeper(spool, settings.audio, identity.session_id), settings.audio).attach(session)
    except Exception:  # noqa: BLE001 - audio must never stop a child's session, nor its text capture
        log.exception("audio_tap_not_attached", session_id=identity.session_id)
        return None


def host_spool(settings: Settings, *, busy_timeout_ms: int = 5000, checkpoint: bool = True) -> Spool:
    """Open (checking, and recovering if need be) the host's spool as configured.

    ``checkpoint``: a thread of this process copies the WAL into the file, so no capture commit
    ever does (the daemon and job processes); short support commands pass False.
    """
    history = settings.chat_history
    return open_spool(history.spool_file, durability=history.durability,
                      max_bytes=history.spool_max_mb * 1024 * 1024, busy_timeout_ms=busy_timeout_ms,
                      backup_dir=history.backup_dir, cipher=cipher_from_settings(history),
                      checkpoint=checkpoint)


@dataclass(frozen=True)
class Remembered:
    """What a session starts with: the device's remembered turns as a chat context, and how many."""

    chat_ctx: Any  # livekit llm.ChatContext, oldest turn first (empty: nothing remembered)
    turns: int


# Reads a device's memory for a session start: (identity, settings, participant attributes).
MemoryLoader = Callable[[DeviceIdentity, Settings, Mapping[str, str]], Awaitable[Remembered]]


def open_memory(settings: Settings, spool: Spool) -> MemoryLoader | None:
    """The host's memory reader for job processes (None when memory is off).

    The memory store (``voicelog.services.memory``) plugs in here and nowhere else: the
    entrypoint, talk and every factory receive what ``preload_memory`` returns.
    """
    from voicelog.services.memory import open_memory_reader

    reader = open_memory_reader(settings, spool)
    return None if reader is None else StoreLoader(reader)


class StoreLoader:
    """The memory store's reader as a MemoryLoader, plus the connection to warm while a device joins."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader  # voicelog.services.memory.MemoryReader

    async def __call__(self, identity: DeviceIdentity, settings: Settings,
                       attributes: Mapping[str, str]) -> Remembered:
        from livekit.agents import llm

        from voicelog.agent.preload import preload_memory as read_memory

        preloaded = await read_memory(self.reader, identity, settings, attributes)
        return Remembered(preloaded.chat_ctx or llm.ChatContext.empty(), preloaded.turns)

    async def warm_up(self) -> None:
        """Connect to Redis now, so the read at session start pays no handshake."""
        await self.reader.warm_up()


async def preload_memory(loader: MemoryLoader | None, identity: DeviceIdentity, settings: Settings,
                         attributes: Mapping[str, str]) -> Remembered:
    """The device's remembered turns before ``session.start``; never raises, empty when none."""
    from livekit.agents import llm

    if loader is None:
        return Remembered(llm.ChatContext.empty(), 0)
    try:
        return await loader(identity, settings, attributes)
    except Exception:  # noqa: BLE001 - memory must never stop a child's session from starting
        log.exception("memory_preload_failed", session_id=identity.session_id)
        return Remembered(llm.ChatContext.empty(), 0)
