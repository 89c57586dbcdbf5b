"""Turn an AgentSession's events into captured turns, one row per user turn and per reply.

Event facts this relies on (livekit-agents 1.8.9, see docs/livekit-events.md):
- ``user_input_transcribed`` fires for interim and final STT results; a turn can have several
  finals, and there is no item id linking them to the committed message.
- ``speech_created`` fires when a reply is scheduled, before any text exists; the reply's
  text (cut to what was heard when interrupted) is in ``speech_handle.chat_items`` once done.
- ``conversation_item_added`` carries the committed user message at end of turn; the first
  item of a session is an AgentHandoff, which is not a message.
- Typed input (``generate_reply(user_input=...)``: RoomIO's ``lk.chat`` text input, ``voicelog
  talk`` with a non-scripted STT) emits ``speech_created`` BEFORE its user message is committed,
  and only commits it if the reply gets scheduled. Such a reply's handle says
  ``input_details.modality == "text"``; its row is opened once the typed message is stored (or
  before the next spoken turn, or when the reply ends without one: a greeting), never before.
- Each ``ChatMessage.metrics`` holds LiveKit's measurements of the turn (final when the message
  is committed); the STT language is only on ``user_input_transcribed``. Both are kept with
  the turn (``TurnMeta``).
Every handler swallows its own errors: history work must never break the voice session.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from voicelog.handlers.audio_tap import AudioTap
from voicelog.services.capture import ChatHistoryService
from voicelog.services.domain import (
    ChatType,
    Turn,
    TurnMeta,
    clean_transcript,
    join_segments,
    turn_meta_from_livekit,
)

log = structlog.get_logger("voicelog.capture")


@dataclass
class _UserTurn:
    """A user turn whose finals are being stored as they arrive."""

    turn: Turn
    segments: list[str] = field(default_factory=list)
    answered: bool = False  # a reply was scheduled: later finals start a new turn
    language: str | None = None  # of the latest final that named one

    @property
    def text(self) -> str:
        return join_segments(self.segments)


def _guarded(method: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(method)
    def wrapper(self: ChatCapture, *args: Any) -> None:
        try:
            method(self, *args)
        except Exception:  # noqa: BLE001 - capture must never raise into livekit's emitter
            self.errors += 1
            log.exception("capture_handler_failed", handler=method.__name__,
                          session_id=self.service.session_id)

    return wrapper


class ChatCapture:
    """Attach to an AgentSession and store every user turn and agent reply through the service."""

    def __init__(self, service: ChatHistoryService, audio: AudioTap | None = None) -> None:
        self.service = service
        self.audio = audio  # with audio.enabled: each user turn's clip is cut when it is committed
        self.errors = 0
        self._open_user_turns: list[_UserTurn] = []
        self._closing: asyncio.Future[None] | None = None
        self._replies_in_flight: set[Any] = set()
        self._deferred_replies: list[Any] = []  # typed-input replies whose row waits (see above)
        self._reply_rows: dict[Any, Turn] = {}

    def attach(self, session: Any) -> ChatCapture:
        """Register the handlers on a (not yet started) AgentSession."""
        session.on("user_input_transcribed", self.on_user_input_transcribed)
        session.on("speech_created", self.on_speech_created)
        session.on("conversation_item_added", self.on_conversation_item_added)
        session.on("close", self.on_close)
        return self

    @_guarded
    def on_user_input_transcribed(self, event: Any) -> None:
        """Store each final segment at once, growing the open user turn's row."""
        if not event.is_final:
            return
        segment = clean_transcript(event.transcript)
        if not segment:
            return
        self._open_deferred_replies()  # a typed-input reply began before this spoken turn
        language = str(event.language) if getattr(event, "language", None) else None
        current = self._open_user_turns[-1] if self._open_user_turns else None
        if current is None or current.answered:
            current = _UserTurn(self.service.open_turn(ChatType.USER, segment), [segment])
            self._open_user_turns.append(current)
        else:
            current.segments.append(segment)
            self.service.update_turn(current.turn, current.text)
        current.language = language or current.language

    @_guarded
    def on_speech_created(self, event: Any) -> None:
        """Reserve the reply's place in the conversation now; fill in its text when it is done."""
        handle = event.speech_handle
        if event.source == "generate_reply" and self._open_user_turns:
            self._open_user_turns[-1].answered = True
        self._replies_in_flight.add(handle)
        details = getattr(handle, "input_details", None)
        if getattr(details, "modality", "audio") == "text" and not self._open_user_turns:
            self._deferred_replies.append(handle)
        else:
            self._reply_rows[handle] = self.service.open_turn(ChatType.AGENT)
        handle.add_done_callback(self._on_speech_done)

    def _open_deferred_replies(self) -> None:
        """Give the typed-input replies waiting for their place a row now, in order."""
        for handle in self._deferred_replies:
            self._reply_rows[handle] = self.service.open_turn(ChatType.AGENT)
        self._deferred_replies.clear()

    @_guarded
    def _on_speech_done(self, handle: Any) -> None:
        self._replies_in_flight.discard(handle)
        if handle in self._deferred_replies:  # no typed message came: a greeting, or cut early
            self._open_deferred_replies()
        reply = self._reply_rows.pop(handle, None)
        if reply is None:
            return
        messages = [item for item in handle.chat_items
                    if getattr(item, "type", None) == "message" and item.role == "assistant"]
        text = "\n".join(t for t in (clean_transcript(m.text_content) for m in messages) if t)
        interrupted = any(m.interrupted for m in messages) or bool(handle.interrupted)
        if self.audio is not None and self.audio.settings.replies and text:
            self.audio.reply_done(reply.seq, handle, messages)  # reserved before the seal, as a child's
        self.service.update_turn(reply, text, interrupted=interrupted, seal=True,
                                 meta=_reply_meta(messages))

    @_guarded
    def on_conversation_item_added(self, event: Any) -> None:
        """Seal the user turn with the committed text; capture text input that had no STT."""
        item = event.item
        if getattr(item, "type", None) != "message" or item.role != "user":
            return  # handoffs, and assistant text arrives through its speech handle
        text = clean_transcript(item.text_content)
        pending = self._take_matching_user_turn(text)
        if pending is None:
            self.service.add_message(ChatType.USER, text, meta=_meta(item) or None)
        else:
            if self.audio is not None:
                # The clip's place is reserved before the turn is sealed, so a shipper never sees the
                # turn deliverable without knowing a clip is coming; a cut and one INSERT, and it
                # never raises: the text below is stored whatever happens to the audio.
                self.audio.turn_committed(pending.turn.seq, item)
            meta = _meta(item, pending.language)
            self.service.update_turn(pending.turn, text or pending.text, seal=True, meta=meta or None)
        self._open_deferred_replies()  # the typed message is stored: now its reply's place

    def _take_matching_user_turn(self, text: str) -> _UserTurn | None:
        # The committed text is the turn's finals joined; prefer an exact match, else the oldest.
        for index, candidate in enumerate(self._open_user_turns):
            if candidate.text == text:
                return self._open_user_turns.pop(index)
        return self._open_user_turns.pop(0) if self._open_user_turns else None

    @_guarded
    def on_close(self, event: Any) -> None:
        """Finish the session in the spool when the AgentSession closes."""
        reason = getattr(getattr(event, "reason", None), "value", None) or "closed"
        self._begin_close(reason, 2.0)

    async def close(self, reason: str = "session_end", reply_timeout: float = 2.0) -> None:
        """Wait briefly for replies still playing, seal every open turn, end the session (once)."""
        await asyncio.shield(self._begin_close(reason, reply_timeout))

    def _begin_close(self, reason: str, reply_timeout: float) -> asyncio.Task[None]:
        # The closing task is held here, so it is never garbage while it runs.
        if self._closing is None:
            self._closing = asyncio.create_task(self._close(reason, reply_timeout),
                                                name=f"voicelog-close-{self.service.session_id}")
        return self._closing

    async def _close(self, reason: str, reply_timeout: float) -> None:
        if self._replies_in_flight:
            waits = [asyncio.create_task(_playout_done(h)) for h in self._replies_in_flight]
            _, late = await asyncio.wait(waits, timeout=reply_timeout)
            for wait in late:  # replies still playing after the grace: stop waiting for them
                wait.cancel()
            if late:
                await asyncio.wait(late)
        for pending in self._open_user_turns:
            self.service.update_turn(pending.turn, pending.text, seal=True)
        self._open_user_turns.clear()
        if self.audio is not None:
            await self.audio.drain()  # the last turns' clips are stored before the session ends
        await self.service.cleanup(reason)


def _meta(message: Any, language: str | None = None) -> TurnMeta:
    return turn_meta_from_livekit(getattr(message, "metrics", None), language)


def _reply_meta(messages: list[Any]) -> TurnMeta | None:
    # A reply with tool calls can say several messages; the first one's audio is what the child
    # waited for, so its measurements are the reply's.
    for message in messages:
        meta = _meta(message)
        if meta:
            return meta
    return None


async def _playout_done(handle: Any) -> None:
    try:
        await handle.wait_for_playout()
    except Exception:  # noqa: BLE001 - an aborted reply is still "done" for our purpose
        pass
