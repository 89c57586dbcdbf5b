"""Shared pieces of the benchmarks: sample texts, statistics, settings, filling a spool."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.kits.settings import make_settings
from voicelog.services.capture import ChatHistoryService
from voicelog.services.config import LoggingSettings, ReportTimeUnit, Settings
from voicelog.services.domain import ChatType, DeviceIdentity, resolve_identity
from voicelog.services.ops import configure_logging
from voicelog.services.spool import Spool

SECRET = "bench-secret"
# What a child and a toy say: mixed scripts and emoji, 20-80 characters, like agent/simulate.
TEXTS = (
    "Why is the sky blue?", "Because sunlight scatters in the air, and blue light scatters the most.",
    "Can you tell me a story about a dragon 🐉?", "我喜欢熊猫，它们每天吃很多竹子。",
    "What do cats dream about", "Maybe they dream of chasing mice and sunny windows.",
    "مرحبا، كيف حالك؟", "One, two, three, four, five! Great counting!",
)


def text_for(seq: int) -> str:
    """A sample utterance for turn ``seq``, prefixed with the number so order can be checked."""
    return f"{seq:06d} {TEXTS[seq % len(TEXTS)]}"


def seq_of(content: str) -> int:
    """The turn number ``text_for`` put at the start of a stored row."""
    return int(content[:6])


def percentile(samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of ``samples``; NaN when empty."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary(samples: Sequence[float], scale: float = 1.0, digits: int = 1) -> dict[str, float]:
    """p50/p99/p99.9/max/mean of ``samples`` times ``scale``, rounded for the report."""
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)

    def scaled(value: float) -> float:
        return round(value * scale, digits)

    return {"n": len(ordered), "p50": scaled(percentile(ordered, 50)), "p99": scaled(percentile(ordered, 99)),
            "p99_9": scaled(percentile(ordered, 99.9)), "max": scaled(ordered[-1]),
            "mean": scaled(sum(ordered) / len(ordered))}


def ratio(a: float, b: float, digits: int = 2) -> float:
    """a / b rounded, NaN when b is zero."""
    return round(a / b, digits) if b else math.nan


def mac_for(index: int) -> str:
    """A distinct, locally administered device MAC per simulated session."""
    return ":".join(f"{b:02x}" for b in (0x02, 0x00, index >> 24 & 255, index >> 16 & 255,
                                           index >> 8 & 255, index & 255))


def identity_for(index: int) -> DeviceIdentity:
    """A gateway-style identity: room ``<uuid4>_<mac>``, MAC from the participant attribute."""
    mac = mac_for(index)
    return resolve_identity(f"{uuid.uuid4()}_{mac.replace(':', '')}", {"device_mac": mac}, mac)


def bench_settings(workdir: Path, manager_url: str = "", **sections: dict[str, Any]) -> Settings:
    """Settings through the production loader, spool and backups under ``workdir``."""
    api = {"url": manager_url, "secret": SECRET, "timeout": 10} if manager_url else {}
    api.update(sections.pop("manager_api", {}))
    history = {"backup_dir": str(workdir / "backups"), **sections.pop("chat_history", {})}
    workdir.mkdir(parents=True, exist_ok=True)
    return make_settings(workdir, manager_api=api, chat_history=history, **sections)


def production_logging(log_file: Path) -> None:
    """Log as the daemon does (INFO, JSON), into a file so the bench output stays readable."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    configure_logging(LoggingSettings(level="INFO", format="json"), secrets=[SECRET],
                      stream=log_file.open("a", encoding="utf-8"))


@dataclass(frozen=True)
class FilledSession:
    """A session put into the spool: its id, MAC and the contents in conversation order."""

    session_id: str
    mac: str
    contents: tuple[str, ...]


def fill_spool(settings: Settings, spool: Spool, sessions: int, turns: int, *,
               first_index: int = 0, text: Callable[[int], str] = text_for) -> list[FilledSession]:
    """Capture ``turns`` alternating user/agent turns per session through ChatHistoryService, end each."""
    filled = []
    for index in range(first_index, first_index + sessions):
        identity = identity_for(index)
        service = ChatHistoryService(spool, identity, settings.chat_history)
        contents = tuple(text(seq) for seq in range(1, turns + 1))
        for seq, content in enumerate(contents, start=1):
            service.add_message(ChatType.USER if seq % 2 else ChatType.AGENT, content)
        spool.end_session(identity.session_id, ended_ms=time.time_ns() // 1_000_000, reason="bench")
        filled.append(FilledSession(identity.session_id, identity.mac, contents))
    return filled


def report_bodies(filled: Sequence[FilledSession],
                  unit: ReportTimeUnit = ReportTimeUnit.MS) -> list[list[dict[str, Any]]]:
    """The report bodies voicelog would send for each filled session, in order, times increasing."""
    start_ms = time.time_ns() // 1_000_000
    per_session = []
    for session in filled:
        bodies = []
        for seq, content in enumerate(session.contents, start=1):
            at_ms = start_ms + seq
            bodies.append({"macAddress": session.mac, "sessionId": session.session_id,
                           "chatType": 1 if seq % 2 else 2, "content": content, "audioBase64": None,
                           "reportTime": at_ms if unit == ReportTimeUnit.MS else at_ms // 1000 + seq})
        per_session.append(bodies)
    return per_session


def session_bodies(filled: Sequence[FilledSession]) -> list[dict[str, Any]]:
    """The whole-session bodies voicelog would send in session mode (timestamps in seconds)."""
    start_s = time.time_ns() // 1_000_000_000
    return [{"macAddress": s.mac, "sessionId": s.session_id, "agentId": None,
             "messages": [{"chatType": 1 if seq % 2 else 2, "content": content, "timestamp": start_s + seq}
                          for seq, content in enumerate(s.contents, start=1)],
             "messageCount": len(s.contents), "sessionEnd": True} for s in filled]
