"""The Manager API endpoints as the contract describes them, answering in its envelope."""

import base64
import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Awaitable, Callable, Protocol

from aiohttp import web

from .store import Binding, Chat, ChatStore

EPOCH = datetime(1970, 1, 1)
UNAUTHORIZED_MSG = "服务器密钥无效，拒绝访问"
SESSION_CONTENT_LIMIT = 2000
IDEMPOTENCY_HEADER = "Idempotency-Key"
_SUCCESS = {"code": 0, "msg": "success", "data": True}


class Settings(Protocol):
    """The live knobs the endpoints read on every request (the ReferenceManager)."""

    secret: str
    report_time_unit: str
    honour_idempotency: bool
    requests: Counter


class Rejection(Exception):
    """A request answered with a non-zero envelope code; `outcome` names it in the counters."""

    def __init__(self, code: int, msg: str, outcome: str) -> None:
        super().__init__(msg)
        self.code, self.msg, self.outcome = code, msg, outcome


def envelope(code: int, msg: str, data: object) -> web.Response:
    """HTTP 200 with the Manager's {"code","msg","data"} envelope."""
    return web.json_response(
        {"code": code, "msg": msg, "data": data},
        dumps=lambda value: json.dumps(value, ensure_ascii=False),
    )


class Endpoints:
    """Request handlers for the device-server and console routes over one ChatStore."""

    def __init__(self, store: ChatStore, settings: Settings) -> None:
        self._store = store
        self._settings = settings

    async def guarded(self, work: Callable[[], Awaitable[web.Response]]) -> web.Response:
        """Run a handler, turning rejections and unhandled errors into envelopes, as Spring does."""
        try:
            return await work()
        except Rejection as rejection:
            self._count(rejection.outcome)
            return envelope(rejection.code, rejection.msg, None)
        except Exception as error:  # the Manager's global handler answers any exception as 500
            self._count("error")
            return envelope(500, f"{type(error).__name__}: {error}", None)

    async def report(self, request: web.Request) -> web.Response:
        """POST /agent/chat-history/report: store one message."""
        self._authorize(request)
        body = await _json_object(request)
        created_at = _created_at(body.get("reportTime"), self._settings.report_time_unit)
        mac, session_id = _text(body, "macAddress"), _text(body, "sessionId")
        chat_type, content = _chat_type(body), _text(body, "content")
        audio_base64 = body.get("audioBase64")

        def chats(binding: Binding) -> list[Chat]:
            # The audio is decoded only when the agent keeps audio, so bad base64 fails only then.
            audio = _audio(audio_base64) if binding.chat_history_conf == 2 else None
            return [Chat(mac, binding.agent_id, session_id, chat_type, content, created_at, audio)]

        return await self._accept(request, mac, chats)

    async def session(self, request: web.Request) -> web.Response:
        """POST /agent/chat-history/session: store a whole session, one row per message."""
        self._authorize(request)
        body = await _json_object(request)
        messages = _messages(body)
        mac, session_id = _text(body, "macAddress"), _text(body, "sessionId")

        def chats(binding: Binding) -> list[Chat]:
            # The agent comes from the MAC binding, as for /report; the body's agentId is ignored.
            return [Chat(mac, binding.agent_id, session_id, chat_type, content, created_at)
                    for chat_type, content, created_at in messages]

        return await self._accept(request, mac, chats)

    async def agent_id(self, request: web.Request, mac: str) -> web.Response:
        """GET /agent/device/{mac}/agent-id: the bound agent's id, or null."""
        self._authorize(request)
        binding = await self._store.binding(mac)
        self._count("agent_id")
        return envelope(0, "success", binding.agent_id if binding else None)

    async def sessions(self, request: web.Request, agent_id: str) -> web.Response:
        """GET /agent/{agentId}/sessions: one page of the agent's sessions, newest first."""
        page = max(1, int(request.query.get("page", "1")))
        limit = max(1, int(request.query.get("limit", "10")))
        total, rows = await self._store.sessions(agent_id, page, limit)
        self._count("console")
        listed = [{"sessionId": row["session_id"], "createdAt": _console_time(row["created_at"]),
                   "chatCount": row["chat_count"], "title": row["title"]} for row in rows]
        return envelope(0, "success", {"total": total, "list": listed})

    async def chat_history(self, request: web.Request, agent_id: str, session_id: str) -> web.Response:
        """GET /agent/{agentId}/chat-history/{sessionId}: the session's chats, oldest first."""
        rows = await self._store.chat_history(agent_id, session_id)
        self._count("console")
        listed = [{"createdAt": _console_time(row["created_at"]), "chatType": row["chat_type"],
                   "content": row["content"], "audioId": row["audio_id"],
                   "macAddress": row["mac_address"]} for row in rows]
        return envelope(0, "success", listed)

    async def _accept(self, request: web.Request, mac: str, build: Callable) -> web.Response:
        """Apply the MAC, chat_history_conf and idempotency rules, then store what `build` makes.

        An idempotency key is kept only together with stored rows, so a failed or unknown-MAC
        attempt leaves the key free for its retry.
        """
        key = request.headers.get(IDEMPOTENCY_HEADER) if self._settings.honour_idempotency else None
        if key is not None and (earlier := await self._store.replay(key)) is not None:
            return self._replayed(earlier)
        binding = await self._store.binding(mac)
        if binding is None:
            self._count("unknown_mac")
            return envelope(0, "success", False)
        if binding.chat_history_conf == 0:
            self._count("not_stored")
            return envelope(0, "success", True)
        earlier = await self._store.save(build(binding), key, _SUCCESS)
        if earlier is not None:
            return self._replayed(earlier)
        self._count("stored")
        return envelope(**_SUCCESS)

    def _replayed(self, answer: dict) -> web.Response:
        self._count("replayed")
        return envelope(answer["code"], answer["msg"], answer["data"])

    def _authorize(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or header[len("Bearer "):] != self._settings.secret:
            raise Rejection(401, UNAUTHORIZED_MSG, "unauthorized")

    def _count(self, outcome: str) -> None:
        self._settings.requests[outcome] += 1


async def _json_object(request: web.Request) -> dict:
    """The request body as a JSON object; anything else is an unreadable message (500)."""
    try:
        body = json.loads(await request.text())
    except ValueError as error:
        raise Rejection(500, f"JSON parse error: {error}", "error") from None
    if not isinstance(body, dict):
        raise Rejection(500, "JSON parse error: body is not an object", "error")
    return body


def _text(body: dict, field: str) -> str:
    """A required, non-blank string field (Java's @NotBlank), else code 10034."""
    value = body.get(field)
    if not isinstance(value, str) or not value.strip():
        raise Rejection(10034, f"{field}不能为空", "invalid")
    return value


def _chat_type(body: dict) -> int:
    """The required chatType; a non-integer cannot be read into Java's Byte (500)."""
    value = body.get("chatType")
    if value is None:
        raise Rejection(10034, "chatType不能为空", "invalid")
    if isinstance(value, bool) or not isinstance(value, int):
        raise Rejection(500, f"JSON parse error: chatType {value!r} is not an integer", "error")
    return value


def _created_at(value: object, unit: str) -> datetime:
    """created_at (naive UTC, millisecond precision) from a report time in `unit`, or now."""
    if value is None:
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        return now.replace(microsecond=now.microsecond // 1000 * 1000)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Rejection(500, f"JSON parse error: time {value!r} is not a number", "error")
    # int() truncates a fractional value, as Jackson does when it reads a float into a Long.
    millis = int(value) * 1000 if unit == "s" else int(value)
    return EPOCH + timedelta(milliseconds=millis)


def _audio(audio_base64: object) -> bytes | None:
    """Decode the optional audio; invalid base64 is an unhandled error (500)."""
    if not audio_base64:
        return None
    return base64.b64decode(audio_base64, validate=True)


def _messages(body: dict) -> list[tuple[int, str, datetime]]:
    """Validate a session's messages into (chatType, content, created_at) with second timestamps."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Rejection(10034, "messages不能为空", "invalid")
    parsed = []
    for message in messages:
        if not isinstance(message, dict):
            raise Rejection(500, "JSON parse error: a message is not an object", "error")
        created_at = _created_at(message.get("timestamp"), "s")
        content = _text(message, "content")
        if _java_length(content) > SESSION_CONTENT_LIMIT:
            raise Rejection(10034, f"content长度不能超过{SESSION_CONTENT_LIMIT}", "invalid")
        parsed.append((_chat_type(message), content, created_at))
    return parsed


def _java_length(text: str) -> int:
    """Length as Java's String.length() counts it: UTF-16 units, so an emoji counts twice."""
    return len(text.encode("utf-16-le")) // 2


def _console_time(value: datetime) -> str:
    """The console's time text; we keep milliseconds (UTC) so tests can see the stored order."""
    return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}"
