"""The one seam between voicelog and the Manager API: requests out, DeliveryResults back.

The transport (``_transport``) is a one-method seam, so tests swap in ``MockTransport``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from urllib.parse import quote

import structlog

from voicelog.services.config import ManagerApiSettings
from voicelog.services.domain import SecretMask, debug_enabled
from voicelog.services.shipping.manager._outcome import (
    CODE_BLANK_FIELD,
    DeliveryResult,
    Outcome,
    Report,
    SessionUpload,
    classify,
    read_envelope,
)
from voicelog.services.shipping.manager._transport import (
    AiohttpTransport,
    Transport,
    TransportError,
    describe_error,
)

REPORT_PATH = "/agent/chat-history/report"
SESSION_PATH = "/agent/chat-history/session"
AGENT_ID_PATH = "/agent/device/{mac}/agent-id"
# Bindings rarely change, but a device can be moved to another agent; re-ask now and then.
AGENT_ID_TTL = 3600.0
# An unbound device may be bound any minute by its owner; do not keep saying no for long.
AGENT_ID_NEGATIVE_TTL = 60.0
AGENT_ID_CACHE_SIZE = 4096
# The all-zero MAC is never bound, so even a Manager without validation stores nothing.
SECRET_CHECK_MAC = "00:00:00:00:00:00"
SECRET_CHECK_SESSION = "voicelog-secret-check"
_HEADER_SAFE = "!#$&'()*+,-./:;=?@[]^_`{|}~"

LOGGER = "voicelog.manager_api"
log = structlog.get_logger(LOGGER)


class ManagerApiClient:
    """Delivers reports and sessions to the Manager API and reads its answers honestly."""

    def __init__(self, settings: ManagerApiSettings, transport: Transport | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._transport = transport if transport is not None else AiohttpTransport(settings.timeout)
        self._clock = clock
        self._agent_ids: dict[str, tuple[str | None, float]] = {}
        self._mask = SecretMask([settings.secret.reveal()])

    async def report(self, report: Report) -> DeliveryResult:
        """POST one message to the report endpoint; network trouble comes back RETRYABLE."""
        # _exchange awaited here directly, not through a shared helper: one coroutine less on
        # the path every request's resumptions walk (once per delivered row).
        result, elapsed_ms = await self._exchange("report", REPORT_PATH, report_body(report),
                                                  report.idempotency_key)
        self._log_result("report", result, elapsed_ms, mac=report.mac, session_id=report.session_id)
        return result

    async def upload_session(self, upload: SessionUpload) -> DeliveryResult:
        """POST a whole session to the session endpoint; network trouble comes back RETRYABLE."""
        result, elapsed_ms = await self._exchange("session", SESSION_PATH, session_body(upload),
                                                  upload.idempotency_key)
        self._log_result("session", result, elapsed_ms, mac=upload.mac, session_id=upload.session_id,
                         messages=len(upload.messages))
        return result

    async def agent_id(self, mac: str) -> str | None:
        """The agent the device is bound to, from cache or the Manager; None if unknown or failing."""
        cached = self._agent_ids.get(mac)
        if cached is not None and cached[1] > self._clock():
            return cached[0]
        try:
            found, known = await self._lookup_agent_id(mac)
        except Exception as error:  # a lookup is an optimisation; it must never break delivery
            log.warning("agent id lookup failed", mac=mac, error=self._redact(describe_error(error)))
            return None
        if known:
            self._remember_agent_id(mac, found)
        return found

    async def check_secret(self) -> DeliveryResult:
        """Tell whether the Manager accepts our secret, by a blank report it cannot store."""
        body = {"macAddress": SECRET_CHECK_MAC, "sessionId": SECRET_CHECK_SESSION, "chatType": 1,
                "content": "", "audioBase64": None, "reportTime": None}
        result, elapsed_ms = await self._exchange("report", REPORT_PATH, body, None)
        # Auth runs before validation, so a validation error or any code-0 answer proves the secret.
        if result.code == CODE_BLANK_FIELD or result.outcome in (Outcome.DELIVERED, Outcome.UNROUTABLE):
            result = replace(result, outcome=Outcome.DELIVERED, reason="secret accepted")
        self._log_result("check_secret", result, elapsed_ms)
        return result

    async def aclose(self) -> None:
        """Close the transport and its connections."""
        await self._transport.aclose()

    async def _exchange(self, endpoint: str, path: str, body: dict,
                        key: str | None) -> tuple[DeliveryResult, float]:
        """POST ``body`` and classify the answer (a TransportError is RETRYABLE); also the time taken."""
        started = time.perf_counter()
        try:
            raw = await self._transport.request("POST", self._settings.url + path,
                                                headers=self._headers(key, with_body=True),
                                                json_body=body)
        except TransportError as error:
            result = DeliveryResult(Outcome.RETRYABLE, f"transport error: {error}")
        else:
            result = classify(raw.status, raw.headers, raw.body, endpoint=endpoint)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        reason = self._redact(result.reason)
        # A copy only when something was masked (rare): this runs once per request.
        return (result if reason == result.reason else replace(result, reason=reason)), elapsed_ms

    async def _lookup_agent_id(self, mac: str) -> tuple[str | None, bool]:
        """Ask the Manager; returns (agent id or None, whether the answer is worth caching)."""
        url = self._settings.url + AGENT_ID_PATH.format(mac=quote(mac, safe=":"))
        raw = await self._transport.request("GET", url, headers=self._headers(None, with_body=False),
                                            json_body=None)
        log.debug("manager api request", endpoint="agent_id", http_status=raw.status)
        envelope = read_envelope(raw.body) if 200 <= raw.status < 300 else f"HTTP {raw.status}"
        if isinstance(envelope, str) or envelope["code"] != 0:
            why = envelope if isinstance(envelope, str) else f"code {envelope['code']}"
            log.warning("agent id lookup failed", mac=mac, error=self._redact(why))
            return None, False
        data = envelope.get("data")
        # Kept in the spool and every backup: only a plain id (a hostile one could be any text).
        usable = isinstance(data, str) and 0 < len(data) <= 64 and data.isprintable()
        return (data, True) if usable else (None, True)

    def _remember_agent_id(self, mac: str, agent_id: str | None) -> None:
        """Cache an answer: a found agent for long, "not bound" only briefly."""
        ttl = AGENT_ID_TTL if agent_id is not None else AGENT_ID_NEGATIVE_TTL
        self._agent_ids.pop(mac, None)
        if len(self._agent_ids) >= AGENT_ID_CACHE_SIZE:
            self._agent_ids.pop(next(iter(self._agent_ids)))  # drop the oldest entry
        self._agent_ids[mac] = (agent_id, self._clock() + ttl)

    def _headers(self, key: str | None, *, with_body: bool) -> dict[str, str]:
        """Auth, content type and (when enabled) the idempotency key of one request."""
        headers = {"Authorization": f"Bearer {self._settings.secret.reveal()}"}
        if with_body:
            headers["Content-Type"] = "application/json"
        if key is not None and self._settings.send_idempotency_key:
            headers["Idempotency-Key"] = header_safe(key)
        return headers

    def _redact(self, text: str) -> str:
        """Hide the secret should an answer or an error ever echo it back (as a value, not inside words)."""
        return self._mask.apply(text)

    def _log_result(self, endpoint: str, result: DeliveryResult, elapsed_ms: float,
                    **context: object) -> None:
        """Log every request at DEBUG and anything not delivered at WARNING; never the content."""
        if debug_enabled(LOGGER):  # the filtered call alone costs more than the check
            log.debug("manager api request", endpoint=endpoint, outcome=str(result.outcome),
                      http_status=result.http_status, code=result.code, elapsed_ms=elapsed_ms,
                      **context)
        if result.outcome is not Outcome.DELIVERED:
            log.warning("manager api did not take delivery", endpoint=endpoint,
                        outcome=str(result.outcome), reason=result.reason,
                        http_status=result.http_status, code=result.code,
                        retry_after=result.retry_after, **context)


def report_body(report: Report) -> dict:
    """The report endpoint's JSON body, with the contract's field names."""
    return {"macAddress": report.mac, "sessionId": report.session_id,
            "chatType": report.chat_type, "content": report.content, "audioBase64": report.audio_base64,
            "reportTime": report.report_time}


def session_body(upload: SessionUpload) -> dict:
    """The session endpoint's JSON body, with the contract's field names."""
    messages = [{"chatType": m.chat_type, "content": m.content, "timestamp": m.timestamp}
                for m in upload.messages]
    return {"macAddress": upload.mac, "sessionId": upload.session_id, "agentId": upload.agent_id,
            "messages": messages, "messageCount": len(messages), "sessionEnd": upload.session_end}


def header_safe(value: str) -> str:
    """A header value that HTTP can carry: printable ASCII stays, anything else is %-encoded."""
    if value.isascii() and value.isprintable():
        return value
    return quote(value, safe=_HEADER_SAFE)
