"""The spool against a model: random capture, claims, acks, failures, crashes and reopens.

Hypothesis drives the real Spool on a real file through every operation the capture side and
the shipper use, plus clean reopens, connections abandoned without closing, and child
processes SIGKILLed right after a commit and in the middle of a transaction. After every
step the spool must equal a plain dictionary model: nothing acknowledged is lost, turns come
back in seq order, deliverable() never passes an open turn, statuses are exactly as modelled.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests.kits import REPO
from voicelog.services.domain import ChatType, Turn, TurnStatus
from voicelog.services.spool import DeliveryState, Spool, open_spool

SESSIONS = ("s-1_6825ddba3971", "s-2_6825ddba3972", "s-3_6825ddba3973")
OWNERS = ("111:1", "222:2")
WAITING = ("pending", "parked")
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
CHILD = """
import os, signal, sys
from voicelog.services.domain import ChatType, Turn, TurnStatus
from voicelog.services.spool import Spool, open_spool
from tests.kits import REPO
path, session, seq = sys.argv[1], sys.argv[2], int(sys.argv[3])
spool = open_spool(path)
spool.insert_turn(Turn(session, seq, ChatType.USER, "child", seq * 10, seq * 10, False, TurnStatus.PENDING))
print("committed", flush=True)
with spool.connection.write() as conn:
    conn.execute("UPDATE turns SET content='torn' WHERE session_id=? AND seq=?", (session, seq))
    spool.insert_turn(Turn(session, seq + 1, ChatType.AGENT, "never", 0, 0, False, TurnStatus.PENDING))
    os.kill(os.getpid(), signal.SIGKILL)
"""


@dataclass
class ModelSession:
    """What the spool should hold for one session."""

    owner: str
    turns: dict[int, list] = field(default_factory=dict)  # seq -> [status, content]

    def seal_open(self) -> None:
        for turn in self.turns.values():
            if turn[0] == "open":
                turn[0] = "pending" if turn[1] else "skipped"

    def deliverable(self) -> list[int]:
        first_open = min((s for s, t in self.turns.items() if t[0] == "open"), default=None)
        return [s for s, t in sorted(self.turns.items())
                if t[0] in WAITING and (first_open is None or s < first_open)]


class SpoolModel(RuleBasedStateMachine):
    """A random walk over the spool's operations, checked against ModelSession after each step."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.path = Path(self.dir.name) / "spool.db"
        self.spool = open_spool(self.path)
        self.delivery = DeliveryState(self.spool)
        self.abandoned: list[Spool] = []
        self.model: dict[str, ModelSession] = {}
        self.children = 0

    def teardown(self) -> None:
        for spool in [self.spool, *self.abandoned]:
            spool.close()
        self.dir.cleanup()

    def _open_turns(self, session_id: str) -> list[int]:
        return [s for s, t in self.model[session_id].turns.items() if t[0] == "open"]

    @rule(session_id=st.sampled_from(SESSIONS), owner=st.sampled_from(OWNERS))
    def open_session(self, session_id: str, owner: str) -> None:
        last_seq, _ = self.spool.open_session(session_id, mac="68:25:dd:ba:39:78", mac_valid=True,
                                              mac_source="attribute", started_ms=1, owner=owner)
        session = self.model.setdefault(session_id, ModelSession(owner))
        if session.owner != owner:
            session.seal_open()  # a new owner seals what the dead one left open
            session.owner = owner
        assert last_seq == max(session.turns, default=0)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), content=TEXT, is_open=st.booleans())
    def insert(self, data: st.DataObject, content: str, is_open: bool) -> None:
        session_id = data.draw(st.sampled_from(sorted(self.model)))
        seq = max(self.model[session_id].turns, default=0) + 1
        status = TurnStatus.OPEN if is_open else TurnStatus.PENDING
        self.spool.insert_turn(Turn(session_id, seq, ChatType.USER, content, seq * 10, seq * 10,
                                    False, status))
        self.model[session_id].turns[seq] = [status.value, content]

    @precondition(lambda self: any("open" in (t[0] for t in m.turns.values()) for m in self.model.values()))
    @rule(data=st.data(), content=TEXT.filter(bool), seal=st.booleans())
    def update_open(self, data: st.DataObject, content: str, seal: bool) -> None:
        session_id = data.draw(st.sampled_from(sorted(s for s in self.model if self._open_turns(s))))
        seq = data.draw(st.sampled_from(self._open_turns(session_id)))
        assert self.spool.update_open_turn(session_id, seq, content=content, seal=seal, now_ms=5)
        self.model[session_id].turns[seq] = ["pending" if seal else "open", content]

    @precondition(lambda self: any("open" in (t[0] for t in m.turns.values()) for m in self.model.values()))
    @rule(data=st.data())
    def skip_open(self, data: st.DataObject) -> None:
        session_id = data.draw(st.sampled_from(sorted(s for s in self.model if self._open_turns(s))))
        seq = data.draw(st.sampled_from(self._open_turns(session_id)))
        self.spool.skip_open_turn(session_id, seq, now_ms=5)
        self.model[session_id].turns[seq][0] = "skipped"

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def end_session(self, data: st.DataObject) -> None:
        session_id = data.draw(st.sampled_from(sorted(self.model)))
        self.spool.end_session(session_id, ended_ms=9, reason="test")
        self.model[session_id].seal_open()

    @precondition(lambda self: any(m.deliverable() for m in self.model.values()))
    @rule(data=st.data())
    def claim_and_settle(self, data: st.DataObject) -> None:
        """The shipper claims a session's deliverable turns, acks a prefix, fails the next one."""
        session_id = data.draw(st.sampled_from(sorted(s for s, m in self.model.items() if m.deliverable())))
        claimed = [t.seq for t in self.delivery.deliverable(session_id)]
        assert claimed == self.model[session_id].deliverable()
        acked = data.draw(st.integers(0, len(claimed)))
        self.delivery.mark_delivered(session_id, claimed[:acked], now_ms=7)
        for seq in claimed[:acked]:
            self.model[session_id].turns[seq][0] = "delivered"
        if acked < len(claimed):
            status = data.draw(st.sampled_from([TurnStatus.PENDING, TurnStatus.PARKED, TurnStatus.DEAD_LETTER]))
            self.delivery.mark_attempt_failed(session_id, [claimed[acked]], status=status, error="x",
                                           next_attempt_ms=0, now_ms=7)
            self.model[session_id].turns[claimed[acked]][0] = status.value

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def requeue(self, data: st.DataObject) -> None:
        session_id = data.draw(st.sampled_from(sorted(self.model)))
        seqs = [s for s, t in self.model[session_id].turns.items() if t[0] in ("parked", "dead_letter")]
        assert self.delivery.requeue(session_id, seqs, now_ms=8) == len(seqs)
        for seq in seqs:
            self.model[session_id].turns[seq][0] = "pending"

    @rule()
    def reopen(self) -> None:
        """A clean restart: close the connection and open the file again."""
        self.spool.close()
        self.spool = open_spool(self.path)
        self.delivery = DeliveryState(self.spool)

    @rule()
    def abandon(self) -> None:
        """A process that died without closing: its connection is simply never used again."""
        self.abandoned.append(self.spool)
        self.spool = open_spool(self.path)
        self.delivery = DeliveryState(self.spool)

    @precondition(lambda self: self.model and self.children < 1)
    @rule(data=st.data())
    def child_killed_mid_transaction(self, data: st.DataObject) -> None:
        """Another process commits a turn, starts a second write and is SIGKILLed inside it."""
        self.children += 1
        session_id = data.draw(st.sampled_from(sorted(self.model)))
        seq = max(self.model[session_id].turns, default=0) + 1
        child = subprocess.run([sys.executable, "-c", CHILD, str(self.path), session_id, str(seq)],
                               cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
        assert child.returncode == -signal.SIGKILL and "committed" in child.stdout, child.stderr
        self.model[session_id].turns[seq] = ["pending", "child"]

    @invariant()
    def spool_equals_model(self) -> None:
        for session_id, session in self.model.items():
            stored = [(t.seq, t.status.value, t.content) for t in self.spool.turns(session_id)]
            assert stored == [(s, t[0], t[1]) for s, t in sorted(session.turns.items())]
            assert [t.seq for t in self.delivery.deliverable(session_id)] == session.deliverable()
        counts: dict[str, int] = {}
        for session in self.model.values():
            for status, _ in session.turns.values():
                counts[status] = counts.get(status, 0) + 1
        assert self.spool.status_counts() == counts
        waiting = {s for s, m in self.model.items() if any(t[0] in WAITING for t in m.turns.values())}
        assert {b.session_id for b in self.delivery.backlog()} == waiting


SpoolModel.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None,
                                        derandomize=True,
                                        suppress_health_check=[HealthCheck.too_slow])
TestSpoolAgainstModel = SpoolModel.TestCase
TestSpoolAgainstModel.__doc__ = "Random operations, crashes and reopens keep the spool equal to the model."


def test_durability_level_sets_how_commits_reach_the_disk(tmp_path):
    """process: synchronous=NORMAL (WAL, survives process death); power: FULL (fsync per commit)."""
    for level, synchronous in (("process", 1), ("power", 2)):
        spool = open_spool(tmp_path / f"{level}.db", durability=level)
        try:
            assert spool.connection.db.execute("PRAGMA synchronous").fetchall() == [(synchronous,)]
            assert spool.connection.db.execute("PRAGMA journal_mode").fetchall() == [("wal",)]
        finally:
            spool.close()
