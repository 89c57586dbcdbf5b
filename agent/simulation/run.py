"""Simulated toys: real AgentSessions driven by scripts, through production's capture path.

Used as the README's first command, as a demo, and as the load generator for tests and
benchmarks. When a Manager is configured the shipper runs in the same process and the
run ends with a drain, so the summary says what reached the Manager. Each session starts with
its device's memory, read as production reads it; sessions of one MAC run one after another
(other devices concurrently), so memory carries over. With ``memory.backend: redis`` the host's
Redis writer runs here too and is flushed before the run ends.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog

from voicelog.agent.preload import preload_memory
from voicelog.agent.simulation.scripted import ScriptTurn, run_conversation
from voicelog.agent.wiring import attach_capture, host_spool
from voicelog.handlers.chat_capture import ChatCapture
from voicelog.services.config import Settings
from voicelog.services.domain import ChatType, TurnStatus, normalise_mac, resolve_identity
from voicelog.services.memory import (
    MemoryReader,
    RedisMemoryWriter,
    close_memory_writer,
    open_memory_reader,
    open_memory_writer,
)
from voicelog.services.spool import Spool

log = structlog.get_logger("voicelog.simulate")
FAST_TIME_SCALE = 0.02  # 50x faster than real time
_CHILD = ["Why is the sky blue?", "Can you tell me a story about a dragon 🐉?",
          "我喜欢熊猫", "What do cats dream about", "مرحبا، كيف حالك؟",
          "How many stars are there", "Let's count to five!", "Do fish sleep?"]
_TOY = ["Because sunlight scatters in the air, and blue light scatters the most.",
        "Once upon a time a small dragon 🐉 learned to breathe bubbles instead of fire.",
        "熊猫很可爱！它们每天吃很多竹子。", "Maybe they dream of chasing mice and sunny windows.",
        "أنا بخير، شكرا لك! وأنت؟", "More stars than all the grains of sand on every beach.",
        "One, two, three, four, five! Great counting!", "Yes, fish rest, but they keep their eyes open."]


@dataclass(frozen=True)
class SimulatedDevice:
    """One simulated toy session: its MAC and the script it plays."""

    mac: str
    turns: tuple[ScriptTurn, ...]
    room_name: str = field(default="")

    def room(self) -> str:
        """The gateway's room name: ``<uuid4>_<mac without colons>``."""
        mac = normalise_mac(self.mac) or self.mac
        return self.room_name or f"{uuid.uuid4()}_{mac.replace(':', '')}"


@dataclass
class SimulationSummary:
    """What a simulation run captured and, with a Manager configured, delivered."""

    sessions: int = 0
    sessions_failed: int = 0
    user_turns: int = 0
    agent_turns: int = 0
    interrupted: int = 0
    skipped_empty: int = 0
    lost: int = 0
    capture_errors: int = 0
    delivering: bool = False
    delivery: dict[str, int] = field(default_factory=dict)  # this run's turns by status after the drain
    delivered_rows: int = 0  # rows this run's delivered turns became (a long turn is several)
    backlog_delivered: int = 0  # older turns, captured before this run, delivered meanwhile
    backlog_rows: int = 0
    delivery_stopped: str = ""  # why delivery stopped early (a StopReason), e.g. "secret_refused"
    delivery_stopped_because: str = ""
    seconds: float = 0.0
    spool: str = ""
    backup_dir: str = ""
    session_ids: list[str] = field(default_factory=list)
    preloaded_turns: int = 0  # turns all sessions were started with, from memory
    memory_flushed: bool | None = None  # with backend redis: everything captured reached Redis
    per_session: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=1)


def generated_devices(sessions: int, turns: int, seed: int = 7) -> list[SimulatedDevice]:
    """Deterministic scripts: mixed languages, emoji, and a barge-in every few turns."""
    rng = random.Random(seed)
    devices = []
    for index in range(sessions):
        mac = ":".join(f"{b:02x}" for b in (0x02, 0x00, 0x00, index >> 16 & 255, index >> 8 & 255, index & 255))
        script = []
        for k in range(turns):
            pick = rng.randrange(len(_CHILD))
            turn: ScriptTurn = {"user": _CHILD[pick], "agent": _TOY[pick]}
            if k % 4 == 2 and k + 1 < turns:
                turn["barge_in_after_chars"] = 12
            script.append(turn)
        devices.append(SimulatedDevice(mac, tuple(script)))
    return devices


def devices_from_script(path: Path) -> list[SimulatedDevice]:
    """Read ``--script``: one JSON object per line, ``{"mac": ..., "turns": [...]}``."""
    devices = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            turns = tuple({"user": str(t["user"]), "agent": str(t["agent"]),
                           "barge_in_after_chars": t.get("barge_in_after_chars")} for t in entry["turns"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not a session line ({exc})") from None
        if not turns:
            raise ValueError(f"{path}:{number}: a session needs at least one turn")
        devices.append(SimulatedDevice(str(entry.get("mac", "")), turns, str(entry.get("room", ""))))
    return devices


@dataclass
class _Run:
    """What every session of one simulation shares."""

    settings: Settings
    spool: Spool
    time_scale: float
    summary: SimulationSummary
    wake: Any = None
    reader: MemoryReader | None = None
    writer: RedisMemoryWriter | None = None


async def simulate(settings: Settings, devices: Sequence[SimulatedDevice], *,
                   time_scale: float = FAST_TIME_SCALE, deliver: bool = True) -> SimulationSummary:
    """Run the devices' sessions (one MAC's in turn), capture into the spool, deliver if configured."""
    started = time.perf_counter()
    summary = SimulationSummary(spool=str(settings.chat_history.spool_file),
                                backup_dir=settings.chat_history.backup_dir)
    summary.per_session = [{} for _ in devices]
    spool = host_spool(settings)
    run = _Run(settings, spool, time_scale, summary, reader=open_memory_reader(settings, spool),
               writer=open_memory_writer(settings, spool))
    shipping = _start_shipper(settings) if deliver and settings.manager_api.url else None
    summary.delivering = shipping is not None
    run.wake = shipping[0].wake if shipping else None
    writing = _start_writer(run.writer)
    try:
        groups = await asyncio.gather(*(_device_sessions(run, group) for group in _by_device(devices)))
        for capture in (c for group in groups for c in group):
            _count(summary, capture, spool)
        summary.preloaded_turns = sum(p.get("preloaded_turns", 0) for p in summary.per_session)
        if writing:
            summary.memory_flushed = await _finish_writer(run.writer, *writing)
        if shipping:
            await _finish_shipping(shipping, spool, summary)
    finally:
        if run.reader is not None:
            await run.reader.aclose()
        spool.close()
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


def _by_device(devices: Sequence[SimulatedDevice]) -> list[list[tuple[int, SimulatedDevice]]]:
    """Sessions grouped by MAC, in script order; a session without a valid MAC is its own group."""
    groups: dict[str, list[tuple[int, SimulatedDevice]]] = {}
    for index, device in enumerate(devices):
        groups.setdefault(normalise_mac(device.mac) or f"#{index}", []).append((index, device))
    return list(groups.values())


async def _device_sessions(run: _Run, sessions: list[tuple[int, SimulatedDevice]]) -> list[ChatCapture]:
    """One device's sessions, one after another, so each starts with what the last one left."""
    captures = []
    for position, (index, device) in enumerate(sessions):
        if position and run.writer is not None:
            await run.writer.flush(timeout=2.0)  # as the daemon would have within 1 s
        capture = await _one_session(run, index, device)
        if capture is not None:
            captures.append(capture)
    return captures


async def _one_session(run: _Run, index: int, device: SimulatedDevice) -> ChatCapture | None:
    attributes = {"device_mac": device.mac} if device.mac else {}
    identity = resolve_identity(device.room(), attributes, device.mac)
    captures: list[Any] = []

    sessions: list[Any] = []

    def attach(session: Any) -> None:
        sessions.append(session)
        captures.append(attach_capture(session, identity, run.settings, run.spool, attributes=attributes,
                                       on_flush=run.wake))

    run.summary.sessions += 1
    run.summary.session_ids.append(identity.session_id)
    preloaded = await preload_memory(run.reader, identity, run.settings, attributes)
    run.summary.per_session[index] = {
        "session_id": identity.session_id, "mac": identity.mac, "preloaded_turns": preloaded.turns,
        "memory": None if preloaded.preload is None else {
            "store": preloaded.preload.store, "outcome": preloaded.preload.outcome.value,
            "fell_back": preloaded.preload.fell_back, "reason": preloaded.preload.reason}}
    try:
        # With audio on, the mic hears the child (a tone while each utterance lasts), so clips are real.
        await run_conversation(list(device.turns), time_scale=run.time_scale, on_session=attach,
                               chat_ctx=preloaded.chat_ctx, voiced=run.settings.audio.enabled)
    except Exception as exc:  # noqa: BLE001 - one broken session must not end the run
        run.summary.sessions_failed += 1
        log.error("simulated_session_failed", session_id=identity.session_id, error=repr(exc))
    if sessions and run.settings.audio.enabled:  # how long the child spoke, turn by turn (wall clock)
        spans = getattr(sessions[0].stt, "spoken_spans", [])
        run.summary.per_session[index]["utterance_seconds"] = [round(end - start, 3) for start, end in spans]
    if captures:
        await captures[0].close("simulation_end")
        return captures[0] if isinstance(captures[0], ChatCapture) else None
    return None


def _start_writer(writer: RedisMemoryWriter | None) -> tuple[asyncio.Event, asyncio.Task[None]] | None:
    if writer is None:
        return None
    stop = asyncio.Event()
    return stop, asyncio.create_task(writer.run(stop), name="voicelog-memory-writer")


async def _finish_writer(writer: RedisMemoryWriter, stop: asyncio.Event, task: asyncio.Task[None]) -> bool:
    """Stop the writer after one last flush; whether everything captured reached Redis."""
    stop.set()
    await task
    flushed = writer.caught_up
    if not flushed:
        log.warning("memory_not_all_in_redis_at_exit", error=writer.stats.last_error,
                    hint="the daemon's writer pushes the rest from the spool when Redis is back")
    await close_memory_writer(writer)
    return flushed


def _count(summary: SimulationSummary, capture: ChatCapture, spool: Spool) -> None:
    stats = capture.service.stats
    summary.skipped_empty += stats.skipped_empty
    summary.lost += stats.lost
    summary.capture_errors += capture.errors
    for turn in spool.turns(capture.service.session_id):
        if turn.status is TurnStatus.SKIPPED:
            continue
        summary.user_turns += turn.chat_type == ChatType.USER
        summary.agent_turns += turn.chat_type == ChatType.AGENT
        summary.interrupted += turn.interrupted


def _start_shipper(settings: Settings) -> tuple[Any, asyncio.Event, asyncio.Task[Any], Any]:
    from voicelog.agent.daemon import build_shipper

    shipper, release = build_shipper(settings)
    stop = asyncio.Event()
    return shipper, stop, asyncio.create_task(shipper.run(stop)), release


async def _finish_shipping(shipping: tuple[Any, asyncio.Event, asyncio.Task[Any], Any],
                           spool: Spool, summary: SimulationSummary) -> None:
    """Drain the shipper, then count this run's turns apart from older backlog it also sent."""
    shipper, stop, task, release = shipping
    stop.set()
    await task
    await release()
    totals: dict[str, int] = {}
    for session_id in summary.session_ids:
        for status, count in spool.status_counts(session_id).items():
            totals[status] = totals.get(status, 0) + count
    summary.delivery = totals
    ours = set(summary.session_ids)
    for session_id, (turns, rows) in shipper.summary.by_session.items():
        if session_id in ours:
            summary.delivered_rows += rows
        else:
            summary.backlog_delivered += turns
            summary.backlog_rows += rows
    if shipper.summary.stopped is not None:
        summary.delivery_stopped = str(shipper.summary.stopped)
        summary.delivery_stopped_because = shipper.summary.stopped_because
