"""Deliver one session's waiting turns, in order, and write each outcome back to the spool.

Report mode sends one row per request, strictly in sequence; a retryable failure holds the
session's later turns back so order holds. Session mode sends the whole session at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_result, wait_random_exponential

from voicelog.services.config import (
    ApiMode,
    AudioSettings,
    ManagerApiSettings,
    ReportTimeUnit,
    ShipperSettings,
)
from voicelog.services.domain import SessionRecord, Turn, TurnStatus, first_of, wall_ms
from voicelog.services.sealing import ContentKeyError, is_sealed
from voicelog.services.shipping._audio import ClipAttacher
from voicelog.services.shipping._gate import DeliveryGate
from voicelog.services.shipping._observer import DeliveryObserver
from voicelog.services.shipping._wire import first_wire_time, idempotency_key, wire_parts
from voicelog.services.shipping.manager import (
    DeliveryResult,
    ManagerApiClient,
    Outcome,
    Report,
    SessionMessage,
    SessionUpload,
)
from voicelog.services.spool import DeliveryState

log = structlog.get_logger("voicelog.shipper")
UNREADABLE_REASON = ("content is encrypted with a key this box does not have; configure "
                     "chat_history encryption keys, then replay")
NO_MAC_REASON = "session has no valid device MAC; replay it with --mac once the device is known"
# Turns the Manager accepted are marked delivered in the spool once a session has this many
# unmarked (and before any wait, and at the end of each round): one commit per group instead of
# one per turn between two requests. Every flush marks the accepted turns of all sessions in
# flight in that one commit, so sessions delivered side by side share their commits. A crash
# re-sends at most this many turns of a session (the turns accepted but not yet marked, or the
# one in flight): see docs/guarantees.md.
MARK_DELIVERED_EVERY = 8
NOTHING_LEFT = DeliveryResult(Outcome.DELIVERED, "nothing left to send")  # immutable: one for all


@dataclass
class RoundResult:
    """What one delivery round of a session achieved."""

    delivered: int = 0
    parked: int = 0
    dead_lettered: int = 0
    held: int = 0  # still pending after a retryable failure (stopping, or attempt budget spent)
    rows: int = 0  # rows the Manager stored: a turn longer than max_content_chars is several
    # Why turns were held, when the Manager gave no answer at all (down, or slower than the timeout).
    no_answer: str | None = None

    def hold(self, count: int, failure: DeliveryResult | None = None) -> RoundResult:
        """Count turns left pending, remembering when the Manager did not answer at all."""
        self.held += count
        if failure is not None and failure.outcome is Outcome.RETRYABLE and failure.http_status is None:
            self.no_answer = failure.reason
        return self


class SessionSender:
    """Send a session's deliverable turns through the Manager client with retries."""

    def __init__(self, delivery: DeliveryState, client: ManagerApiClient, api: ManagerApiSettings,
                 shipping: ShipperSettings, gate: DeliveryGate, observer: DeliveryObserver,
                 stopping: asyncio.Event, *, max_attempts: int | None = None,
                 now: Callable[[], int] = wall_ms, audio: AudioSettings | None = None) -> None:
        self.delivery, self.client, self.api, self.shipping = delivery, client, api, shipping
        self.gate, self.observer, self.stopping = gate, observer, stopping
        self.max_attempts = max_attempts
        self._now = now
        self._unit = ReportTimeUnit.S if api.api_mode == ApiMode.SESSION else api.report_time_unit
        self._backoff = wait_random_exponential(multiplier=shipping.retry_initial, max=shipping.retry_max)
        self._unmarked: dict[str, list[Turn]] = {}  # session -> accepted, not yet marked delivered
        # Clips go on the report only: the session upload has no audio field (said once, at start).
        self.clips = ClipAttacher(delivery, audio) if audio is not None and audio.enabled else None
        if self.clips is not None and api.api_mode == ApiMode.SESSION:
            log.warning("audio_not_sent_in_session_mode",
                        hint="the session upload format has no audio field; clips stay on this box")

    async def deliver(self, session: SessionRecord) -> RoundResult:
        """Deliver what is deliverable for this session now."""
        self._flush_delivered(session.session_id)  # left over from a mark that failed: not re-sent
        turns = self.delivery.deliverable(session.session_id)
        if not turns:
            return RoundResult()
        if not session.mac_valid:
            return self._park(session, turns, NO_MAC_REASON)
        session = await self._lookup_agent(session)
        if self.api.api_mode == ApiMode.SESSION:
            return await self._deliver_session(session, turns)
        return await self._deliver_reports(session, turns)

    async def _deliver_reports(self, session: SessionRecord, turns: list[Turn]) -> RoundResult:
        result = RoundResult()
        prepared, unreadable = self._pin_round(session, turns)
        try:
            for index, (turn, parts, wire) in enumerate(prepared):
                if self.stopping.is_set():
                    return result.hold(len(turns) - index)  # shutting down: the rest stays spooled
                outcome, rows = await self._send_parts(session, turn, parts, wire,
                                                       resumed=turn.wire_time is not None)
                result.rows += rows
                if outcome.outcome is Outcome.DELIVERED:
                    self._delivered_unmarked(turn)
                    result.delivered += 1
                    continue
                self._flush_delivered(session.session_id)
                if outcome.outcome is Outcome.REJECTED:
                    self._dead_letter(session, [turn], outcome)
                    result.dead_lettered += 1
                elif outcome.outcome is Outcome.UNROUTABLE:
                    return self._park(session, self.delivery.deliverable(session.session_id), outcome.reason,
                                      result)
                else:
                    return result.hold(1, outcome)
            if unreadable:
                self._flush_delivered(session.session_id)
                return self._park(session, turns[len(prepared):], UNREADABLE_REASON, result)
            return result
        finally:
            # The round's end (also when cancelled at aclose): nothing delivered stays unmarked.
            self._flush_delivered(session.session_id)

    def _pin_round(self, session: SessionRecord,
                   turns: list[Turn]) -> tuple[list[tuple[Turn, list[str], int]], bool]:
        """Each readable turn (up to the first unreadable one) with its rows and first report time.

        Times not pinned yet are pinned for the whole round in one transaction before the first
        send, instead of one commit per turn between requests; True when a turn was unreadable.
        """
        prepared: list[tuple[Turn, list[str], int]] = []
        pins: list[tuple[int, int, int]] = []
        last_wire = session.last_wire_time
        for turn in turns:
            text = self._plaintext(turn)
            if text is None:
                break
            limit = turn.wire_limit or self.api.max_content_chars
            parts = wire_parts(text, limit)
            wire = turn.wire_time
            if wire is None:
                wire = first_wire_time(turn, last_wire, self._unit)
                pins.append((turn.seq, wire, limit))
            last_wire = max(last_wire, wire + len(parts) - 1)
            prepared.append((turn, parts, wire))
        if pins:
            self.delivery.fix_wire_times(session.session_id, pins, last_wire)
        return prepared, len(prepared) < len(turns)

    def _plaintext(self, turn: Turn) -> str | None:
        """The words to send; None when they are sealed with a key this box does not have."""
        if not is_sealed(turn.content):
            return turn.content
        if self.delivery.cipher is None:
            return None
        try:
            return self.delivery.cipher.open(turn.content)
        except ContentKeyError:
            return None

    async def _send_parts(self, session: SessionRecord, turn: Turn, parts: list[str],
                          wire: int, *, resumed: bool) -> tuple[DeliveryResult, int]:
        """Send the parts of a turn not sent yet; the last outcome and how many rows were stored.

        ``resumed``: the turn was tried before (its wire time was pinned by an earlier round).
        """
        result = NOTHING_LEFT
        stored = 0
        # Only a split turn tried before can have parts accepted already (one split by an older
        # voicelog, without a pinned limit, may have been cut differently): else no read.
        split = len(parts) > 1 or turn.wire_limit is None
        start = self.delivery.parts_sent(turn.session_id, turn.seq) if resumed and split else 0
        # The clip rides on the turn's first row only (a split turn is one utterance).
        audio = await self.clips.audio_for(turn) if self.clips is not None and start == 0 else None
        for index in range(start, len(parts)):
            report = Report(session.mac, session.session_id, int(turn.chat_type), parts[index],
                            wire + index, idempotency_key(turn, index, len(parts)),
                            audio if index == 0 else None)
            result = await self._with_retries(lambda r=report: self.client.report(r), [turn])
            if result.outcome is not Outcome.DELIVERED:
                return result, stored
            stored += 1
            if len(parts) > 1:
                self.delivery.record_parts_sent(turn.session_id, turn.seq, index + 1)
        return result, stored

    async def _deliver_session(self, session: SessionRecord, turns: list[Turn]) -> RoundResult:
        prepared, unreadable = self._pin_round(session, turns)
        if unreadable:
            return self._park(session, turns, UNREADABLE_REASON)
        messages = [SessionMessage(int(turn.chat_type), part, wire + i)
                    for turn, parts, wire in prepared for i, part in enumerate(parts)]
        upload = SessionUpload(session.mac, session.session_id, session.agent_id, tuple(messages),
                               session.ended_ms is not None,
                               f"{session.session_id}#{turns[0].seq}-{turns[-1].seq}")
        outcome = await self._with_retries(lambda: self.client.upload_session(upload), turns)
        if outcome.outcome is Outcome.DELIVERED:
            self._delivered(session, turns)
            return RoundResult(delivered=len(turns), rows=len(messages))
        if outcome.outcome is Outcome.REJECTED:
            self._dead_letter(session, turns, outcome)
            return RoundResult(dead_lettered=len(turns))
        if outcome.outcome is Outcome.UNROUTABLE:
            return self._park(session, turns, outcome.reason)
        return RoundResult().hold(len(turns), outcome)

    async def _with_retries(self, send: Callable[[], Awaitable[DeliveryResult]],
                            turns: list[Turn]) -> DeliveryResult:
        """Send until an outcome other than retryable, pausing while the Manager cannot take turns."""
        while True:
            if not self.gate.is_open and self.max_attempts is not None:
                # A bounded run (ship --once, replay) reports the pause instead of waiting it out.
                return DeliveryResult(Outcome.RETRYABLE, f"delivery paused: {self.gate.describe()}")
            if not self.gate.is_open:  # checked here first: no coroutine per request while open
                await self._wait_gate(turns[0].session_id)
                if not self.gate.is_open:  # stopping while the secret is refused: do not ask again
                    return DeliveryResult(Outcome.RETRYABLE, "stopping while the secret is refused")
            # The first attempt is timed and counted inline: no wrapper coroutine on the path of
            # every request; retries (rare) go through ``_counted``.
            started = time.perf_counter()
            result = await send()
            self._observe(started, result)
            if result.outcome is Outcome.RETRYABLE:
                result = await self._retry(self._counted(send), result, turns)
            if result.outcome not in (Outcome.UNAUTHORIZED, Outcome.MISCONFIGURED):
                return result
            # Not a verdict on this turn: it stays pending in its place, and all delivery waits.
            self._record_failure(turns, TurnStatus.PENDING, result.reason, 0)
            self.gate.close(result.reason, result.outcome)
            if self.stopping.is_set() or self.max_attempts is not None:
                return DeliveryResult(Outcome.RETRYABLE, f"stopping while paused: {result.reason}")

    async def _retry(self, attempt: Callable[[], Awaitable[DeliveryResult]], first: DeliveryResult,
                     turns: list[Turn]) -> DeliveryResult:
        """Retry after a first retryable failure; tenacity is set up only now, not for every send.

        The failure already in hand is tenacity's attempt 1 (handed back without sending again),
        so the backoff schedule and ``max_attempts`` count exactly as if tenacity made it.
        """
        pending = [first]

        async def again() -> DeliveryResult:
            return pending.pop() if pending else await attempt()

        retrying = AsyncRetrying(
            retry=retry_if_result(lambda r: r.outcome is Outcome.RETRYABLE),
            wait=self._wait, stop=self._should_stop, sleep=self._sleep,
            before_sleep=lambda state: self._record_retry(state, turns),
            retry_error_callback=lambda state: state.outcome.result())
        return await retrying(again)

    def _counted(self, send: Callable[[], Awaitable[DeliveryResult]]) -> Callable[[], Awaitable[DeliveryResult]]:
        async def attempt() -> DeliveryResult:
            started = time.perf_counter()
            result = await send()
            self._observe(started, result)
            return result

        return attempt

    def _observe(self, started: float, result: DeliveryResult) -> None:
        self.observer.request_took(time.perf_counter() - started)
        self.observer.attempted(result.outcome.value)

    async def _wait_gate(self, session_id: str) -> None:
        """Wait (the gate is closed) until it opens or we stop, with no accepted turn unmarked."""
        self._flush_delivered(session_id)  # never wait with accepted turns unmarked
        await first_of(self.gate.wait_open(), self.stopping)

    def _wait(self, state: RetryCallState) -> float:
        # Full jitter, but never sooner than the Manager's Retry-After asks.
        retry_after = state.outcome.result().retry_after if state.outcome else None
        return max(self._backoff(state), retry_after or 0.0)

    def _should_stop(self, state: RetryCallState) -> bool:
        if self.max_attempts is not None and state.attempt_number >= self.max_attempts:
            return True
        return self.stopping.is_set()

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)
        except TimeoutError:
            pass

    def _record_retry(self, state: RetryCallState, turns: list[Turn]) -> None:
        self._flush_delivered(turns[0].session_id)  # before the sleep: never wait with turns unmarked
        result: DeliveryResult = state.outcome.result()
        delay = state.next_action.sleep if state.next_action else 0.0
        self._record_failure(turns, TurnStatus.PENDING, result.reason, delay)
        log.warning("delivery_retry", session_id=turns[0].session_id, seq=turns[0].seq,
                    attempt=state.attempt_number, reason=result.reason, retry_in=round(delay, 3))

    def _record_failure(self, turns: list[Turn], status: TurnStatus, reason: str, delay: float) -> None:
        now = self._now()
        self.delivery.mark_attempt_failed(turns[0].session_id, [t.seq for t in turns], status=status,
                                       error=reason, next_attempt_ms=now + int(delay * 1000), now_ms=now)

    def _delivered(self, session: SessionRecord, turns: list[Turn]) -> None:
        self._unmarked.setdefault(session.session_id, []).extend(turns)
        self._flush_delivered(session.session_id)

    def _delivered_unmarked(self, turn: Turn) -> None:
        """The Manager accepted ``turn``: mark it with the next group (or now, if the group is full)."""
        waiting = self._unmarked.setdefault(turn.session_id, [])
        waiting.append(turn)
        if len(waiting) >= MARK_DELIVERED_EVERY:
            self.flush_delivered()

    def _flush_delivered(self, session_id: str) -> None:
        """Make sure the session's accepted turns are marked delivered (with everyone else's)."""
        if session_id in self._unmarked:
            self.flush_delivered()

    def flush_delivered(self) -> None:
        """Mark every session's accepted turns delivered, in one transaction.

        Forgotten only once the commit succeeded: after a failed one (disk full) they wait for
        the next flush, and their session's next round flushes before it reads what to send,
        so a turn the Manager accepted is not sent again.
        """
        if not self._unmarked:
            return
        flushing = self._unmarked
        now = self._now()
        self.delivery.mark_delivered_many({session_id: [t.seq for t in turns]
                                           for session_id, turns in flushing.items()}, now)
        self._unmarked = {}
        for turns in flushing.values():
            self.observer.turn_event("delivered", len(turns))
            for turn in turns:
                self.observer.delivered_after(max(0, now - turn.captured_ms) / 1000)

    def _dead_letter(self, session: SessionRecord, turns: list[Turn], outcome: DeliveryResult) -> None:
        self._record_failure(turns, TurnStatus.DEAD_LETTER, outcome.reason, 0)
        self.observer.turn_event("dead_letter", len(turns))
        log.error("turn_dead_lettered", session_id=session.session_id, seqs=[t.seq for t in turns],
                  reason=outcome.reason)

    def _park(self, session: SessionRecord, turns: list[Turn], reason: str,
              result: RoundResult | None = None) -> RoundResult:
        result = result or RoundResult()
        if turns:
            self._record_failure(turns, TurnStatus.PARKED, reason, self.shipping.parked_retry_interval)
            self.observer.turn_event("parked", len(turns))
            log.warning("session_parked", session_id=session.session_id, turns=len(turns),
                        reason=reason, retry_in=self.shipping.parked_retry_interval)
        result.parked += len(turns)
        return result

    async def _lookup_agent(self, session: SessionRecord) -> SessionRecord:
        # Enrichment only: an unbound or failed lookup never stops delivery.
        if not self.api.agent_lookup or session.agent_id:
            return session
        agent_id = await self.client.agent_id(session.mac)
        if not agent_id:
            log.warning("device_not_bound_per_lookup", session_id=session.session_id)
            return session
        self.delivery.set_agent_id(session.session_id, agent_id)
        return self.delivery.session(session.session_id) or session
