"""What memory is made of: a remembered turn, the names it goes by, and the rules that choose them.

Both stores (the host's spool, a shared Redis) give candidate turns; ``select`` applies the same
rules to either: within the TTL and after the device's forget cut-off, of the device's current
agent, the newest ``max_turns``, then whole turns dropped oldest first until ``max_chars`` fit,
returned oldest first (newest last).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from voicelog.services.config import MemorySettings
from voicelog.services.domain import ChatType
from voicelog.services.spool import RecentTurn

# Ids of preloaded chat items start with this, so anything downstream can tell them from live ones.
MEMORY_ITEM_PREFIX = "mem_"


def device_ref(mac: str) -> str:
    """The name a device goes by in Redis: a digest of its MAC, so no key or value names the MAC."""
    return hashlib.blake2b(mac.encode("ascii", "replace"), digest_size=10).hexdigest()


def session_ref(session_id: str) -> str:
    """The name a session goes by in Redis (its id holds the MAC)."""
    return hashlib.blake2b(session_id.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


@dataclass(frozen=True)
class MemoryTurn:
    """One remembered turn as a store holds it; ``content`` is sealed when encryption is on."""

    ref: str  # "<session ref>#<seq>": stable across stores, names no device
    chat_type: ChatType
    content: str
    interrupted: bool
    created_ms: int  # when the turn was captured on its host
    agent_id: str | None = None
    session_id: str | None = None  # known when read from this host's spool

    @property
    def session_key(self) -> str:
        """The session part of ``ref``."""
        return self.ref.rsplit("#", 1)[0]

    @property
    def seq(self) -> int:
        """The turn's place in its session."""
        return int(self.ref.rsplit("#", 1)[1])

    @classmethod
    def from_spool(cls, turn: RecentTurn) -> MemoryTurn:
        """A turn read from the spool."""
        return cls(f"{session_ref(turn.session_id)}#{turn.seq}", turn.chat_type, turn.content,
                   turn.interrupted, turn.captured_ms, turn.agent_id, turn.session_id)

    def to_json(self) -> str:
        """The Redis value (no session id: it names the device)."""
        return json.dumps({"ref": self.ref, "type": int(self.chat_type), "content": self.content,
                           "interrupted": self.interrupted, "created_ms": self.created_ms,
                           "agent": self.agent_id}, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> MemoryTurn:
        """A turn from its Redis value; ValueError if it is not one."""
        try:
            d = json.loads(raw)
            return cls(str(d["ref"]), ChatType(int(d["type"])), str(d["content"]), bool(d["interrupted"]),
                       int(d["created_ms"]), d.get("agent"))
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a memory entry: {exc}") from None


@dataclass(frozen=True)
class RememberedTurn:
    """A chosen turn with its text opened: what the agent is started with."""

    turn: MemoryTurn
    text: str

    @property
    def role(self) -> str:
        """The chat role: the child is the user, the toy the assistant."""
        return "user" if self.turn.chat_type == ChatType.USER else "assistant"

    def to_dict(self) -> dict[str, object]:
        """The turn for JSON answers (``memory show --json``, the /v1 API)."""
        return {"chat_type": int(self.turn.chat_type), "role": self.role, "content": self.text,
                "interrupted": self.turn.interrupted, "created_ms": self.turn.created_ms,
                "session_id": self.turn.session_id}


def select(candidates: Iterable[MemoryTurn], settings: MemorySettings, *, now_ms: int, cutoff_ms: int = -1,
           agent_id: str | None = None, open_text: Callable[[str], str | None] = lambda s: s
           ) -> list[RememberedTurn]:
    """Choose what a session starts with, by the rules in this module's docstring.

    ``open_text`` opens sealed content; a turn it cannot open (None) is left out.
    """
    floor = max(now_ms - settings.ttl_ms, cutoff_ms + 1)
    unique: dict[str, MemoryTurn] = {}
    for turn in candidates:
        if turn.created_ms >= floor:
            unique[turn.ref] = _better(unique.get(turn.ref), turn)
    kept = _of_current_agent(list(unique.values()), agent_id)
    chosen = _in_conversation_order(kept)[-settings.max_turns:]
    opened = [RememberedTurn(t, text) for t in chosen if (text := open_text(t.content))]
    total = sum(len(r.text) for r in opened)
    while opened and total > settings.max_chars:
        total -= len(opened.pop(0).text)
    return opened


def _better(known: MemoryTurn | None, other: MemoryTurn) -> MemoryTurn:
    # The same turn from both stores: the spool's copy knows its session id and latest agent.
    if known is None or (other.session_id and not known.session_id):
        return other
    return known


def _of_current_agent(turns: list[MemoryTurn], agent_id: str | None) -> list[MemoryTurn]:
    """Leave out turns spoken with another agent than the device's current one.

    The current agent is the one the session knows at start, else the agent of the newest turn
    that has one: a device moved to another agent then starts fresh once the move is recorded.
    """
    current = agent_id
    if current is None:
        known = [t for t in turns if t.agent_id]
        current = max(known, key=lambda t: t.created_ms).agent_id if known else None
    if current is None:
        return turns
    return [t for t in turns if t.agent_id in (None, current)]


def _in_conversation_order(turns: list[MemoryTurn]) -> list[MemoryTurn]:
    """Sessions by their first turn's time, each session's turns by their sequence number.

    Sequence numbers, not clocks, order a session's turns, so a wall clock that jumped back
    mid-session cannot shuffle them.
    """
    first: dict[str, int] = {}
    for turn in turns:
        first[turn.session_key] = min(first.get(turn.session_key, turn.created_ms), turn.created_ms)
    return sorted(turns, key=lambda t: (first[t.session_key], t.session_key, t.seq))
