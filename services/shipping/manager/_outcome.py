"""What a delivery attempt to the Manager API came to, and the records it carries.

Kept free of aiohttp so the shipper and the spool can use it without the network stack.
The Manager answers almost everything with HTTP 200 and a ``{"code","msg","data"}`` envelope
(shared/contracts/manager-api.md), so ``classify`` reads the envelope, never just the status.
"""

from __future__ import annotations

import functools
import json
import math
import re
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import StrEnum

BODY_LIMIT = 64 * 1024
REASON_LIMIT = 300
SNIPPET_LIMIT = 200
ENDPOINTS = ("report", "session")
CODE_OK, CODE_UNAUTHORIZED, CODE_SERVER_ERROR, CODE_BLANK_FIELD = 0, 401, 500, 10034
# HTTP statuses worth retrying: the request timed out, was throttled, or hit a broken server.
_RETRYABLE_HTTP = frozenset({408, 429})
# HTTP statuses that are a verdict on the request itself (its content or size): dead-letter.
# Every other non-2xx answer (redirects, 404/405, 403, ...) is not the Manager judging the turn.
_VERDICT_HTTP = frozenset({400, 413, 414, 422})
_DELAY_SECONDS = re.compile(r"^\s*\d+(\.\d+)?\s*$")
_REMEMBERED_BODY_LIMIT = 256  # 2xx bodies up to this size have their verdict remembered (see classify)


class Outcome(StrEnum):
    """What the shipper should do with the records of one request."""

    DELIVERED = "delivered"  # stored (or deliberately not stored by the agent's setting)
    UNROUTABLE = "unroutable"  # the MAC is not bound: nothing stored, park and retry slowly
    UNAUTHORIZED = "unauthorized"  # the server secret is wrong: hold everything
    # The answer is not the Manager speaking about this turn (a redirect to a login page, 404/405
    # from a wrong context path or a redeploy, a proxy refusing): hold everything, probe, resume.
    MISCONFIGURED = "misconfigured"
    REJECTED = "rejected"  # the Manager refused this request's content (10034 and the like): dead-letter
    RETRYABLE = "retryable"  # network, throttling, server trouble, garbage answer: try again


@dataclass(frozen=True)
class DeliveryResult:
    """The outcome of one request with a human-readable reason and what the Manager said."""

    outcome: Outcome
    reason: str
    http_status: int | None = None
    code: int | None = None
    retry_after: float | None = None


@dataclass(frozen=True)
class Report:
    """One chat message for the report endpoint (one row in the Manager's table)."""

    mac: str
    session_id: str
    chat_type: int
    content: str
    report_time: int | None
    idempotency_key: str
    audio_base64: str | None = None  # the turn's clip as a base64 WAV (audio.enabled), first part only


@dataclass(frozen=True)
class SessionMessage:
    """One message inside a whole-session upload; ``timestamp`` is in seconds."""

    chat_type: int
    content: str
    timestamp: int


@dataclass(frozen=True)
class SessionUpload:
    """A whole session for the session endpoint of the newer toy backend."""

    mac: str
    session_id: str
    agent_id: str | None
    messages: tuple[SessionMessage, ...]
    session_end: bool
    idempotency_key: str


def classify(http_status: int, headers: Mapping[str, str], body: bytes, *,
             endpoint: str) -> DeliveryResult:
    """Turn one HTTP answer of the report or session endpoint into a DeliveryResult."""
    if endpoint not in ENDPOINTS:
        raise ValueError(f"endpoint must be one of {', '.join(ENDPOINTS)}; got {endpoint!r}")
    if 200 <= http_status < 300:
        # A 2xx answer is judged by its body alone, and the Manager says the same few short
        # bodies again and again ({"code":0,"msg":"success","data":true}): the verdict on such
        # a body is remembered (the same function of the same bytes), sparing a JSON parse per request.
        if type(body) is bytes and len(body) <= _REMEMBERED_BODY_LIMIT:
            return _classify_short_envelope(http_status, body, endpoint)
        return _classify_envelope(http_status, body, endpoint)
    return _classify_http_error(http_status, headers, body)


def _classify_http_error(status: int, headers: Mapping[str, str], body: bytes) -> DeliveryResult:
    """Classify an answer whose HTTP status is not 2xx (a proxy, a gateway, a throttle)."""
    retry_after = parse_retry_after(header_value(headers, "Retry-After"))
    reason = _clip(f"HTTP {status}: {body_snippet(body)}")
    if status in _RETRYABLE_HTTP or 500 <= status < 600:
        return DeliveryResult(Outcome.RETRYABLE, reason, status, retry_after=retry_after)
    if status == 401:
        # A proxy refusing our credentials is an auth problem; holding beats dead-lettering it all.
        return DeliveryResult(Outcome.UNAUTHORIZED, reason, status)
    if status in _VERDICT_HTTP:
        return DeliveryResult(Outcome.REJECTED, reason, status)
    if 300 <= status < 400:
        where = header_value(headers, "Location")
        reason = _clip(f"HTTP {status}: redirected to {where or 'an unnamed place'} (a login page or "
                       f"a wrong manager_api.url?); {body_snippet(body, 80)}")
    return DeliveryResult(Outcome.MISCONFIGURED, reason, status)


@functools.lru_cache(maxsize=64)
def _classify_short_envelope(status: int, body: bytes, endpoint: str) -> DeliveryResult:
    """``_classify_envelope``, remembered: a pure function of the bytes, with a frozen result."""
    return _classify_envelope(status, body, endpoint)


def _classify_envelope(status: int, body: bytes, endpoint: str) -> DeliveryResult:
    """Classify a 2xx answer by the Manager's envelope; garbage is retryable, never delivered."""
    envelope = read_envelope(body)
    if isinstance(envelope, str):
        return _malformed(status, envelope)
    code, msg, data = envelope["code"], _message(envelope), envelope.get("data")
    if code == CODE_OK:
        return _classify_success(status, data, endpoint)
    if code == CODE_UNAUTHORIZED:
        return DeliveryResult(Outcome.UNAUTHORIZED, _clip(f"server secret refused (code 401): {msg}"),
                              status, code)
    if code in _RETRYABLE_HTTP or 500 <= code < 600:
        return DeliveryResult(Outcome.RETRYABLE, _clip(f"Manager error (code {code}): {msg}"),
                              status, code)
    return DeliveryResult(Outcome.REJECTED, _clip(f"Manager rejected (code {code}): {msg}"),
                          status, code)


def _classify_success(status: int, data: object, endpoint: str) -> DeliveryResult:
    """Read ``data`` of a code-0 answer: false means the MAC is unknown and nothing was stored."""
    if data is False:
        return DeliveryResult(Outcome.UNROUTABLE, "MAC not bound to any device; nothing stored",
                              status, CODE_OK)
    if endpoint == "report" and data is not True:
        return _malformed(status, f"report data is not a boolean: {_clip(repr(data), 60)}")
    return DeliveryResult(Outcome.DELIVERED, "accepted", status, CODE_OK)


def read_envelope(body: bytes) -> dict | str:
    """Parse the Manager's envelope; a string says why the body is not one."""
    if len(body) > BODY_LIMIT:
        return f"body larger than {BODY_LIMIT} bytes"
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return f"not JSON: {body_snippet(body, 80)}"
    if not isinstance(parsed, dict):
        return f"not an envelope object: {body_snippet(body, 80)}"
    code = parsed.get("code")
    if isinstance(code, bool) or not isinstance(code, int):
        return f"no integer code: {body_snippet(body, 80)}"
    return parsed


def _malformed(status: int, why: str) -> DeliveryResult:
    return DeliveryResult(Outcome.RETRYABLE, _clip(f"malformed response (HTTP {status}): {why}"),
                          status)


def _message(envelope: dict) -> str:
    msg = envelope.get("msg")
    return msg if isinstance(msg, str) else json.dumps(msg, ensure_ascii=False)


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """Look a header up by name, ignoring case (a plain dict from a fake transport is fine)."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After value (delay-seconds or an HTTP-date), or None."""
    if value is None:
        return None
    if _DELAY_SECONDS.match(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a zone-less one means the same
        return None
    delay = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, delay) if math.isfinite(delay) else None


def body_snippet(body: bytes, limit: int = SNIPPET_LIMIT) -> str:
    """The start of a body as one line of text, for reasons and logs."""
    text = body[: limit * 4].decode("utf-8", errors="replace")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _clip(text: str, limit: int = REASON_LIMIT) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


# Sentence ends: Latin ones count when whitespace follows, CJK ones count on their own.
_SENTENCE_END = frozenset(".!?;…")
_CJK_SENTENCE_END = frozenset("。！？；…")


def split_content(content: str, max_chars: int) -> list[str]:
    """Split text into in-order parts of at most ``max_chars`` that join back to it exactly.

    Breaks after a sentence end or whitespace in the last half of the window when there is
    one, never inside a surrogate pair or a combining / joiner sequence unless a single such
    sequence is longer than ``max_chars``. Empty content gives no parts.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    parts, start = [], 0
    while len(content) - start > max_chars:
        cut = _cut_point(content, start, start + max_chars)
        parts.append(content[start:cut])
        start = cut
    if start < len(content):
        parts.append(content[start:])
    return parts


def _cut_point(text: str, start: int, limit: int) -> int:
    """Where the part beginning at ``start`` should end; ``limit`` is the furthest allowed."""
    near = max(start + 1, limit - (limit - start) // 2)
    for wanted in (_after_sentence_end, _after_whitespace):
        for cut in range(limit, near - 1, -1):
            if wanted(text, cut) and _safe_cut(text, cut):
                return cut
    for cut in range(limit, start, -1):
        if _safe_cut(text, cut):
            return cut
    # One cluster longer than the whole window: cut it, but still keep a surrogate pair whole.
    return limit - 1 if limit - 1 > start and _splits_surrogates(text, limit) else limit


def _after_sentence_end(text: str, cut: int) -> bool:
    before = text[cut - 1]
    if before in _CJK_SENTENCE_END:
        return True
    return before.isspace() and cut >= 2 and text[cut - 2] in _SENTENCE_END


def _after_whitespace(text: str, cut: int) -> bool:
    return text[cut - 1].isspace()


def _safe_cut(text: str, cut: int) -> bool:
    """Say whether cutting between ``text[cut-1]`` and ``text[cut]`` keeps every cluster whole."""
    before, after = text[cut - 1], text[cut]
    if _splits_surrogates(text, cut) or before == "\u200d" or _extends(after):
        return False
    return not (_regional(before) and _regional(after) and _regional_run(text, cut) % 2 == 1)


def _splits_surrogates(text: str, cut: int) -> bool:
    return "\ud800" <= text[cut - 1] <= "\udbff" and "\udc00" <= text[cut] <= "\udfff"


def _extends(char: str) -> bool:
    """A character that belongs to the one before it: combining marks, joiners, skin tones."""
    if char in "\u200c\u200d" or "\U0001f3fb" <= char <= "\U0001f3ff":
        return True
    return unicodedata.category(char) in ("Mn", "Mc", "Me")


def _regional(char: str) -> bool:
    return "\U0001f1e6" <= char <= "\U0001f1ff"


def _regional_run(text: str, cut: int) -> int:
    """How many regional indicators end at ``cut``; an odd count means inside a flag."""
    count = 0
    while cut - count > 0 and _regional(text[cut - count - 1]):
        count += 1
    return count
