"""Simulated toys: real AgentSessions driven by scripts, through production's capture path.

Used as the README's first command, as a demo, and as the load generator for tests and
benchmarks. When a Manager is configured the shipper runs in the same process and the
run ends with a drain, so the summary says what reached the Manager.
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

from voicelog.agent.simulation.scripted import ScriptTurn, run_conversation
from voicelog.agent.wiring import attach_capture, host_spool
from voicelog.handlers.chat_capture import ChatCapture
from voicelog.services.config import Settings
from voicelog.services.domain import ChatType, TurnStatus, normalise_mac, resolve_identity
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


async def simulate(settings: Settings, devices: Sequence[SimulatedDevice], *,
                   time_scale: float = FAST_TIME_SCALE, deliver: bool = True) -> SimulationSummary:
    """Run every device's session concurrently, capture into the spool, deliver if configured."""
    started = time.perf_counter()
    summary = SimulationSummary(spool=str(settings.chat_history.spool_file),
                                backup_dir=settings.chat_history.backup_dir)
    spool = host_spool(settings)
    shipping = _start_shipper(settings) if deliver and settings.manager_api.url else None
    summary.delivering = shipping is not None
    wake = shipping[0].wake if shipping else None
    try:
        captures = await asyncio.gather(*(_one_session(settings, spool, d, time_scale, wake, summary)
                                          for d in devices))
        for capture in captures:
            if capture is not None:
                _count(summary, capture, spool)
        if shipping:
            await _finish_shipping(shipping, spool, summary)
    finally:
        spool.close()
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


async def _one_session(settings: Settings, spool: Spool, device: SimulatedDevice, time_scale: float,
                       wake: Any, summary: SimulationSummary) -> ChatCapture | None:
    attributes = {"device_mac": device.mac} if device.mac else {}
    identity = resolve_identity(device.room(), attributes, device.mac)
    captures: list[Any] = []

    def attach(session: Any) -> None:
        captures.append(attach_capture(session, identity, settings, spool, attributes=attributes,
                                       on_flush=wake))

    summary.sessions += 1
    summary.session_ids.append(identity.session_id)
    try:
        await run_conversation(list(device.turns), time_scale=time_scale, on_session=attach)
    except Exception as exc:  # noqa: BLE001 - one broken session must not end the run
        summary.sessions_failed += 1
        log.error("simulated_session_failed", session_id=identity.session_id, error=repr(exc))
    if captures:
        await captures[0].close("simulation_end")
        return captures[0] if isinstance(captures[0], ChatCapture) else None
    return None


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
