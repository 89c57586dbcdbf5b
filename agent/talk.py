"""``voicelog talk``: type as the child, read the toy's replies, through the production entrypoint.

The session runs exactly as a toy's would (``console.ConsoleServer``): the device is identified
from its participant, its memory is preloaded, your factory (or the built-in agent) serves it,
capture stores every turn, and ending the input shuts the job down, which flushes the session.
With ``agent.stt: scripted`` each typed line is *spoken* by the scripted STT, so turn detection,
transcripts, metrics and the language run as for a voice; with any other STT the line is typed
input (``generate_reply(user_input=...)``), as RoomIO's chat input would give it. When a Manager
is configured the session is delivered before exit (within ``shipper.drain_timeout``).

Exit codes: 0 the input ended and every line got its reply; 1 the session failed (the factory
raised or returned the wrong thing, a reply never came); 2 bad arguments or an agent that cannot
be loaded; 130 Ctrl-C (the session is still flushed; a second Ctrl-C leaves at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import uuid
from collections.abc import Iterable
from typing import Any, TextIO

import structlog

from voicelog.agent.console import ConsoleServer, ServedSession, on_job_loop
from voicelog.agent.factory import FactoryError
from voicelog.agent.models import ModelSetupError
from voicelog.agent.wiring import host_spool
from voicelog.agent.worker import prepare_agent
from voicelog.services.backup import BackupWriter
from voicelog.services.config import Settings
from voicelog.services.domain import ChatType, TurnStatus, first_of, normalise_mac, resolve_identity

log = structlog.get_logger("voicelog.talk")
REPLY_TIMEOUT = 120.0  # seconds a reply may take (a real LLM and TTS included)


async def talk(settings: Settings, mac: str, session_id: str | None = None, *,
               source: Iterable[str] | None = None, out: TextIO | None = None,
               err: TextIO | None = None) -> int:
    """Run one typed session; return the exit code (see the module docstring)."""
    source, out, err = source or sys.stdin, out or sys.stdout, err or sys.stderr
    device = normalise_mac(mac)
    if device is None:
        print(f"voicelog: --mac {mac!r} is not a MAC address (e.g. 68:25:dd:ba:39:78)", file=err)
        return 2
    try:
        prepare_agent(settings)  # on the main thread, as livekit wants plugins registered
    except (FactoryError, ModelSetupError) as exc:
        print(f"voicelog: {exc}", file=err)
        return 2
    room = session_id or f"{uuid.uuid4()}_{device.replace(':', '')}"
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    _read_in_background(source, lines, loop)
    ctrl_c = _CtrlC(lines, loop)
    delivery = _Delivery.start(settings, loop, err)
    try:
        code = await _session(settings, room, device, lines, out, err, delivery)
    finally:
        ctrl_c.remove()
        if delivery is not None:
            await delivery.finish()
    _summary(settings, room, delivery, err)
    return 130 if ctrl_c.pressed and code == 0 else code


async def _session(settings: Settings, room: str, device: str, lines: asyncio.Queue[str | None],
                   out: TextIO, err: TextIO, delivery: _Delivery | None) -> int:
    async with ConsoleServer(settings, on_flush=delivery.wake if delivery else None) as server:
        try:
            served = await server.open_session(room, device)
        except Exception as exc:  # noqa: BLE001 - whatever stopped it, said in one line
            print(f"voicelog: the session did not start: {exc}", file=err)
            if "api_key" in str(exc) or "API_KEY" in str(exc):  # a plugin or inference wants credentials
                print("voicelog: hint: for a console without credentials set agent.stt, agent.llm and "
                      "agent.tts to scripted (e.g. VOICELOG__AGENT__LLM=scripted)", file=err)
            await server.drain()
            return 1
        print(f"talking as {device} in session {served.identity.session_id} "
              f"({served.remembered.turns} remembered turns); end with Ctrl-D", file=err)
        code = await _converse(served, lines, out, err)
        await server.close_session(served, "talk ended")
        return code


async def _converse(served: ServedSession, lines: asyncio.Queue[str | None], out: TextIO,
                    err: TextIO) -> int:
    interactive = out.isatty()
    while True:
        if interactive:
            print("child> ", end="", file=out, flush=True)
        line = await lines.get()
        if line is None:
            return 0
        if not line.strip():
            continue  # an empty utterance never ends a turn
        try:
            reply = await asyncio.wait_for(on_job_loop(served, reply_to(served.session, line.strip())),
                                           REPLY_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - the session ended under us, or no reply came
            print(f"voicelog: no reply to {line.strip()!r}: {type(exc).__name__}: {exc}", file=err)
            return 1
        print(f"toy> {reply}", file=out, flush=True)


async def reply_to(session: Any, line: str) -> str:
    """Say ``line`` as the child (spoken through a scripted STT, else typed); return the reply's text."""
    from voicelog.agent.simulation.scripted import ScriptedSTT

    loop = asyncio.get_running_loop()
    created: asyncio.Future[Any] = loop.create_future()
    closed: asyncio.Future[Any] = loop.create_future()

    def on_created(event: Any) -> None:
        if not created.done():
            created.set_result(event.speech_handle)

    def on_close(event: Any) -> None:
        if not closed.done():
            closed.set_exception(RuntimeError(f"the session closed ({event.reason}): {event.error!r}"))

    session.on("speech_created", on_created)
    session.on("close", on_close)
    try:
        if isinstance(session.stt, ScriptedSTT):
            session.stt.speak(line)
            await first_of(created, closed)
            handle = closed.result() if closed.done() else created.result()
        else:
            handle = session.generate_reply(user_input=line)
        await handle  # played out (or cut), its chat items committed, tool steps included
    finally:
        session.off("speech_created", on_created)
        session.off("close", on_close)
    said = [item.text_content or "" for item in handle.chat_items
            if getattr(item, "type", None) == "message" and item.role == "assistant"]
    return " ".join(text for text in said if text) or "(no reply)"


def _read_in_background(source: Iterable[str], lines: asyncio.Queue[str | None],
                        loop: asyncio.AbstractEventLoop) -> None:
    # A daemon thread, not the loop's executor: asyncio.run joins its executor at exit, and a
    # read blocked on a terminal would then hold the process after Ctrl-C until Enter.
    def pump() -> None:
        with contextlib.suppress(ValueError, OSError, RuntimeError):
            for line in source:
                loop.call_soon_threadsafe(lines.put_nowait, line.rstrip("\n"))
        with contextlib.suppress(RuntimeError):  # the loop may be gone already
            loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=pump, name="voicelog-talk-stdin", daemon=True).start()


class _CtrlC:
    """First Ctrl-C: end of input (the reply finishes, the session is flushed). Second: leave now."""

    def __init__(self, lines: asyncio.Queue[str | None], loop: asyncio.AbstractEventLoop) -> None:
        self.pressed = False
        self._lines, self._loop = lines, loop
        with contextlib.suppress(ValueError, RuntimeError):  # not the main thread: no handler
            loop.add_signal_handler(signal.SIGINT, self._pressed)

    def _pressed(self) -> None:
        if self.pressed:
            os._exit(130)
        self.pressed = True
        self._lines.put_nowait(None)

    def remove(self) -> None:
        with contextlib.suppress(ValueError, RuntimeError):
            self._loop.remove_signal_handler(signal.SIGINT)


class _Delivery:
    """A shipper in this process while the session runs, drained at the end (bounded)."""

    def __init__(self, shipper: Any, release: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.shipper, self._release, self._loop = shipper, release, loop
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(shipper.run(self._stop), name="voicelog-talk-shipper")

    @classmethod
    def start(cls, settings: Settings, loop: asyncio.AbstractEventLoop, err: TextIO) -> _Delivery | None:
        if not settings.manager_api.url:
            return None
        from voicelog.agent.daemon import build_shipper
        from voicelog.services.domain import ShipperAlreadyRunning

        try:
            shipper, release = build_shipper(settings)
        except ShipperAlreadyRunning:
            print("voicelog: the host's running shipper delivers this session", file=err)
            return None
        return cls(shipper, release, loop)

    def wake(self, session_id: str | None = None) -> None:
        """Called from the job's thread when the session flushes."""
        self._loop.call_soon_threadsafe(self.shipper.wake, session_id)

    async def finish(self) -> None:
        self._stop.set()
        try:
            await asyncio.wait_for(self._task, self.shipper.settings.shipper.drain_timeout + 10)
        finally:
            await self._release()


def _summary(settings: Settings, room: str, delivery: _Delivery | None, err: TextIO) -> None:
    spool = host_spool(settings, checkpoint=False)  # one read at the end
    try:
        session = spool.session(resolve_identity(room).session_id)
        if session is None:
            print(f"voicelog: nothing was captured for session {room}", file=err)
            return
        turns = spool.turns(session.session_id)
        counts = spool.status_counts(session.session_id)
    finally:
        spool.close()
    child = sum(t.chat_type == ChatType.USER and t.status is not TurnStatus.SKIPPED for t in turns)
    toy = sum(t.chat_type == ChatType.AGENT and t.status is not TurnStatus.SKIPPED for t in turns)
    where = BackupWriter(settings.chat_history.backup_dir).path_for(session)
    print(f"captured {child} child turn(s) and {toy} repl(y/ies) in session {session.session_id}; "
          f"backup {where}", file=err)
    states = ", ".join(f"{n} {status.replace('_', '-')}" for status, n in sorted(counts.items()))
    if settings.manager_api.url:
        print(f"delivery: {states}" + ("" if delivery else " (left to the host's shipper)"), file=err)
    else:
        print(f"delivery: no Manager configured (manager_api.url); {states} in the spool", file=err)
