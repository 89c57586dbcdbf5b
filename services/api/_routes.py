"""The /v1 routes, mounted by the daemon on its local ops server, behind a bearer token.

    GET    /v1/devices/{mac}/memory   what the device's next session would start with
    DELETE /v1/devices/{mac}/memory   forget it (both stores); the turns stay for delivery
    GET    /v1/sessions?mac=&since=   sessions on this box (spool and backups), with turn counts
    GET    /v1/sessions/{id}          one session, its turns with delivery status
    DELETE /v1/sessions/{id}          erase the session everywhere on this box (as ``backups purge``)

Without ``http.api_token`` none of them exists (404). A missing or wrong token is 401, bad input
400, an unknown session 404; answers are JSON. Nothing here logs content or tokens.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from voicelog.services.api._inputs import BadInput, parse_mac, parse_session_id, parse_since
from voicelog.services.config import Settings
from voicelog.services.domain import wall_ms
from voicelog.services.memory import MemoryEraser, MemoryReader, Outcome, open_memory_reader
from voicelog.services.privacy import purge
from voicelog.services.sealing import cipher_from_settings
from voicelog.services.spool import Spool, open_spool
from voicelog.services.support import Catalog, SessionFilter, SessionView, session_json, summary_json

log = structlog.get_logger("voicelog.api")
READ_BUDGET_MS = 1000  # a support request may wait longer than a session start
MAX_SESSIONS = 1000
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Api:
    """The /v1 application and what it holds open."""

    app: web.Application
    routes: _Routes

    async def aclose(self) -> None:
        """Close the spool connection and Redis clients the routes opened."""
        await self.routes.aclose()


def build_api(settings: Settings) -> Api | None:
    """The /v1 application, or None when no ``http.api_token`` is configured (the routes are off)."""
    token = settings.http.api_token
    if not token:
        return None
    routes = _Routes(settings)
    app = web.Application(middlewares=[_bearer(token.reveal()), _answers_json])
    app.router.add_get("/devices/{mac}/memory", routes.get_memory)
    app.router.add_delete("/devices/{mac}/memory", routes.forget_memory)
    app.router.add_get("/sessions", routes.list_sessions)
    app.router.add_get("/sessions/{session_id}", routes.get_session)
    app.router.add_delete("/sessions/{session_id}", routes.delete_session)
    return Api(app, routes)


def _bearer(token: str) -> Any:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode("utf-8", "replace")
        if not hmac.compare_digest(given, expected):
            return _json({"error": "unauthorized", "message": "send Authorization: Bearer <http.api_token>"},
                         401, headers={"WWW-Authenticate": 'Bearer realm="voicelog"'})
        return await handler(request)

    return require_token


@web.middleware
async def _answers_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BadInput as exc:
        return _json({"error": f"bad_{exc.field}", "message": str(exc)}, 400)
    except web.HTTPException as exc:
        return _json({"error": exc.reason.lower().replace(" ", "_"), "message": exc.reason}, exc.status)
    except Exception as exc:  # noqa: BLE001 - an answer, never a traceback; the log names the route only
        log.error("api_request_failed", route=request.match_info.route.resource.canonical
                  if request.match_info.route.resource else "?", error=type(exc).__name__)
        return _json({"error": "internal", "message": "the request failed; see the daemon's log"}, 500)


class _Routes:
    """The handlers, over one spool connection of their own (queries run in a thread, one at a time)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._spool: Spool | None = None
        self._reader: MemoryReader | None = None

    def _open(self) -> Spool:
        if self._spool is None:
            history = self.settings.chat_history
            self._spool = open_spool(history.spool_file, durability=history.durability,
                                     max_bytes=history.spool_max_mb * 1024 * 1024, busy_timeout_ms=2000,
                                     backup_dir=history.backup_dir, cipher=cipher_from_settings(history))
            self._reader = open_memory_reader(self.settings, self._spool)
        return self._spool

    async def _in_thread(self, work: Callable[[Spool], Any]) -> Any:
        def locked() -> Any:
            with self._lock:
                return work(self._open())

        return await asyncio.to_thread(locked)

    async def get_memory(self, request: web.Request) -> web.Response:
        """What the device's next session would be started with."""
        _no_query(request)
        mac = parse_mac(request.match_info["mac"])
        if mac in self.settings.chat_history.opt_out_macs:
            return _json({"mac": mac, "opted_out": True, "turns": []}, 200)
        await self._in_thread(lambda _spool: None)  # opens the spool and the reader on first use
        if self._reader is None:
            return _json({"mac": mac, "enabled": False, "turns": []}, 200)
        preload = await self._reader.read(mac, budget_ms=max(READ_BUDGET_MS, self.settings.memory.read_timeout_ms))
        if preload.outcome in (Outcome.TIMEOUT, Outcome.ERROR):
            return _json({"error": "memory_unreadable", "message": preload.reason or "no store answered"}, 503)
        return _json({"mac": mac, **preload.to_dict()}, 200)

    async def forget_memory(self, request: web.Request) -> web.Response:
        """Forget the device: 200 when done in every store, 202 when Redis must still be told."""
        _no_query(request)
        mac = parse_mac(request.match_info["mac"])
        report = await self._in_thread(
            lambda spool: MemoryEraser(self.settings.memory, spool).forget(mac, now_ms=wall_ms()))
        body = {"mac": mac, "forgotten": True, "stores": report.to_dict()}
        if not report.complete:
            body["message"] = "forgotten on this box; Redis is unreachable, the daemon applies it when it is back"
        return _json(body, 200 if report.complete else 202)

    async def list_sessions(self, request: web.Request) -> web.Response:
        """Sessions on this box, oldest first, optionally of one device and since a time."""
        _no_query(request, allowed=("mac", "since"))
        macs = frozenset({parse_mac(request.query["mac"])}) if "mac" in request.query else frozenset()
        since = parse_since(request.query["since"]) if "since" in request.query else None
        wanted = SessionFilter(macs=macs, since_ms=since)
        views = await self._in_thread(lambda spool: self._catalog(spool).summaries(wanted))
        body = {"sessions": [summary_json(v) for v in views[-MAX_SESSIONS:]],
                "truncated": len(views) > MAX_SESSIONS}
        return _json(body, 200)

    async def get_session(self, request: web.Request) -> web.Response:
        """One session with its turns and their delivery status."""
        _no_query(request)
        session_id = parse_session_id(request.match_info["session_id"])
        view = await self._in_thread(lambda spool: self._load(spool, session_id))
        if view is None:
            raise web.HTTPNotFound(reason="No such session")
        return _json(session_json(self._readable(view)), 200)

    async def delete_session(self, request: web.Request) -> web.Response:
        """Erase the session from the spool, backups, quarantine and memory (``backups purge --session``)."""
        _no_query(request)
        session_id = parse_session_id(request.match_info["session_id"])

        def erase(spool: Spool) -> Any:
            return purge(spool, self.settings.chat_history.backup_dir, session_id=session_id,
                         memory=MemoryEraser(self.settings.memory, spool))

        report = await self._in_thread(erase)
        if not report.sessions and not report.files:
            raise web.HTTPNotFound(reason="No such session")
        body = {"session_id": session_id, "erased": {"sessions": len(report.sessions), "turns": report.turns,
                                                     "files": len(report.files)},
                "memory": report.memory.to_dict() if report.memory else None, "errors": report.errors}
        return _json(body, 200 if not report.errors else 500)

    def _catalog(self, spool: Spool) -> Catalog:
        return Catalog(spool, Path(self.settings.chat_history.backup_dir))

    def _load(self, spool: Spool, session_id: str) -> SessionView | None:
        try:
            view = self._catalog(spool).load(session_id)
        except (KeyError, ValueError):
            return None
        return view if view.session.session_id == session_id else None  # ids only, never prefixes

    def _readable(self, view: SessionView) -> SessionView:
        """Sealed content opened for the answer (or marked when no key opens it)."""
        return view.opened(self._spool.cipher if self._spool is not None else None)

    async def aclose(self) -> None:
        """Close what the routes opened, once no request's thread uses it."""
        if self._reader is not None:
            await self._reader.aclose()

        def close() -> None:
            with self._lock:
                if self._spool is not None:
                    self._spool.close()
                    self._spool = None

        await asyncio.to_thread(close)


def _no_query(request: web.Request, allowed: tuple[str, ...] = ()) -> None:
    unknown = sorted(set(request.query) - set(allowed))
    if unknown:
        raise BadInput("query", f"unknown query parameter(s); allowed: {', '.join(allowed) or 'none'}")


def _json(body: dict[str, Any], status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers,
                             dumps=lambda value: json.dumps(value, ensure_ascii=False))
