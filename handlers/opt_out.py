"""Stand-in capture for devices that opted out: counts turns, stores and logs no words."""

from __future__ import annotations

from typing import Any

import structlog

log = structlog.get_logger("voicelog.capture")
OPT_OUT_ATTRIBUTE = "voicelog_history"


def opted_out(mac: str, attributes: dict[str, str] | None, opt_out_macs: tuple[str, ...]) -> bool:
    """Whether a device's chats must not be kept: listed in config or flagged by the gateway."""
    flag = (attributes or {}).get(OPT_OUT_ATTRIBUTE, "").strip().lower()
    return mac in opt_out_macs or flag in ("off", "false", "0", "no")


class OptedOutCapture:
    """Listens to the same events as ChatCapture but only counts them."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.user_turns = 0
        self.replies = 0
        self.errors = 0
        self._reported = False

    def attach(self, session: Any) -> OptedOutCapture:
        """Register counting handlers on the AgentSession."""
        session.on("user_input_transcribed", self._on_transcript)
        session.on("speech_created", self._on_speech)
        session.on("close", lambda _event: self._report("session_end"))
        return self

    def _on_transcript(self, event: Any) -> None:
        self.user_turns += bool(event.is_final)

    def _on_speech(self, _event: Any) -> None:
        self.replies += 1

    async def close(self, reason: str = "session_end") -> None:
        """Report the counts (never content) when the session ends."""
        self._report(reason)

    def _report(self, reason: str) -> None:
        # Synchronous, so the close event starts no task; reported once however often called.
        if self._reported:
            return
        self._reported = True
        log.info("opted_out_session_not_stored", session_id=self.session_id,
                 final_segments=self.user_turns, replies=self.replies, reason=reason)
