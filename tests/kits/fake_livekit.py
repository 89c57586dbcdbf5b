"""The one piece of a LiveKit server a worker talks to before any room: the ``/agent`` websocket.

A livekit-agents worker connects to ``<LIVEKIT_URL>/agent``, sends a ``WorkerMessage`` with
``register`` and waits for a ``ServerMessage`` with ``register`` (its worker id) before it counts
as registered. After that it only sends status updates, which this stand-in reads and ignores.
It hands out no jobs: it exists to test registration, its loss and its return, honestly.
"""

from __future__ import annotations

import asyncio

from aiohttp import WSMsgType, web
from livekit.protocol import agent


class FakeLiveKit:
    """A local ``ws://`` endpoint that registers workers; ``drop()`` cuts every connection."""

    def __init__(self) -> None:
        self.registered: list[str] = []  # worker ids handed out, in order
        self.refuse = False  # when set, connections are closed before registering
        self._sockets: set[web.WebSocketResponse] = set()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self) -> FakeLiveKit:
        app = web.Application()
        app.router.add_get("/agent", self._worker_socket)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def drop(self) -> None:
        """Close every worker connection (as a server restart would)."""
        for ws in list(self._sockets):
            await ws.close()

    async def stop(self) -> None:
        await self.drop()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeLiveKit:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _worker_socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if self.refuse:
            await ws.close()
            return ws
        self._sockets.add(ws)
        try:
            first = await asyncio.wait_for(ws.receive(), 10)
            if first.type is not WSMsgType.BINARY or not agent.WorkerMessage.FromString(first.data).HasField(
                    "register"):
                await ws.close()
                return ws
            answer = agent.ServerMessage()
            answer.register.worker_id = f"AW_fake_{len(self.registered) + 1}"
            answer.register.server_info.region = "test"
            self.registered.append(answer.register.worker_id)
            await ws.send_bytes(answer.SerializeToString())
            async for _message in ws:  # status updates: read and ignore
                pass
        finally:
            self._sockets.discard(ws)
        return ws
