"""Run the production entrypoint with no LiveKit server, as livekit's own ``console`` mode does.

livekit-agents 1.8.9 runs a console session as a *fake job*: an ``AgentServer`` with the thread
executor, run unregistered, given ``simulate_job(room, fake_job=True)``. The job then runs the
registered entrypoint in a thread with its own event loop, on livekit's mock room; its only
remote participant is made to look like the toy (identity = MAC, attribute ``device_mac``).
Nothing is faked on voicelog's side: the entrypoint, the factory, memory preload, capture and the
shutdown flush are the ones ``start`` runs. ``voicelog talk`` and the tests use this.

Facts it relies on (docs/own-agent.md, "How talk and the tests run the entrypoint"):
- a fake job never ends by itself: ``close_session`` calls ``ctx.shutdown`` on the job's loop and
  then drains; the job's shutdown callbacks (capture's flush) run before ``drain`` returns;
- the mock room is one per process: sessions of one process run one at a time;
- an unregistered server queues every job's status on a bounded channel nobody reads: use one
  server for a handful of sessions (talk: one), never for hundreds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Callable
from typing import Any

from voicelog.agent.models import SCRIPTED_TIME_SCALE
from voicelog.agent.wiring import MemoryLoader
from voicelog.agent.worker import HOST_KEY, ServedSession, build_server, make_host, prepare_agent
from voicelog.services.config import Settings
from voicelog.services.domain import first_of

START_TIMEOUT = 30.0  # seconds for the server to start and a session to be served
CLOSE_TIMEOUT = 15.0  # seconds for a session's shutdown (capture flush included)


def simulated_io(served: ServedSession) -> None:
    """A silent microphone and a speaker that plays in (scaled) real time, as RoomIO would.

    Preset before ``session.start``, so RoomIO leaves audio and transcription to them instead
    of wiring livekit's mock room. The transcript synchronizer cuts an interrupted reply to
    what was heard, exactly as in a room.
    """
    from livekit.agents.voice.transcription import TranscriptSynchronizer

    from voicelog.agent.simulation.scripted import HeardTextOutput, SilentAudioInput, SimulatedAudioOutput

    session = served.session
    synchronizer = TranscriptSynchronizer(next_in_chain_audio=SimulatedAudioOutput(),
                                          next_in_chain_text=HeardTextOutput(), speed=1 / SCRIPTED_TIME_SCALE)
    session.input.audio = SilentAudioInput(time_scale=SCRIPTED_TIME_SCALE)
    session.output.audio = synchronizer.audio_output
    session.output.transcription = synchronizer.text_output
    served.ctx.add_shutdown_callback(synchronizer.aclose)


class _Watcher:
    """Hands the served session (or why it failed) from the job's thread to the caller."""

    def __init__(self, prepare_io: Callable[[ServedSession], None] | None) -> None:
        self._prepare_io = prepare_io
        self.result: concurrent.futures.Future[ServedSession] = concurrent.futures.Future()

    def prepare(self, served: ServedSession) -> None:
        if self._prepare_io is not None:
            self._prepare_io(served)

    def started(self, served: ServedSession) -> None:
        if not self.result.done():
            self.result.set_result(served)

    def failed(self, error: BaseException) -> None:
        if not self.result.done():
            self.result.set_exception(error)


class ConsoleServer:
    """The production AgentServer on a thread executor, serving fake jobs one at a time."""

    def __init__(self, settings: Settings, *, memory: MemoryLoader | None = None,
                 on_flush: Callable[[str], None] | None = None,
                 prepare_io: Callable[[ServedSession], None] | None = simulated_io) -> None:
        self.settings = settings
        self._memory, self._on_flush = memory, on_flush
        self._watcher = _Watcher(prepare_io)
        self._server: Any = None
        self._run: asyncio.Task[None] | None = None

    def _setup(self, proc: Any) -> None:
        # The job process's prewarm: production's, plus the watcher (and a test's memory).
        host = make_host(self.settings, watcher=self._watcher, on_flush=self._on_flush)
        if self._memory is not None:
            host.memory = self._memory
        proc.userdata[HOST_KEY] = host

    async def __aenter__(self) -> ConsoleServer:
        from livekit.agents import JobExecutorType

        prepare_agent(self.settings)  # factory and plugins imported here, on the caller's (main) thread
        self._server = build_server(self.settings, setup_fnc=self._setup,
                                    job_executor_type=JobExecutorType.THREAD, num_idle_processes=1,
                                    shutdown_process_timeout=CLOSE_TIMEOUT)
        started = asyncio.Event()
        self._server.once("worker_started", started.set)
        self._run = asyncio.create_task(self._server.run(devmode=True, unregistered=True),
                                        name="voicelog-console-server")
        await first_of(started, self._run, timeout=START_TIMEOUT)
        if self._run.done():
            self._run.result()  # it ended before starting: raise why
            raise RuntimeError("the LiveKit console server stopped before it started")
        if not started.is_set():
            raise TimeoutError(f"the LiveKit console server did not start within {START_TIMEOUT:g} s")
        return self

    async def open_session(self, room: str, mac: str, attributes: dict[str, str] | None = None,
                           identity: str | None = None) -> ServedSession:
        """Dispatch a fake job for ``room`` with the toy as its participant; return it once started.

        Raises what stopped the session from starting (a ``FactoryError`` for a broken factory).
        """
        self._watcher.result = concurrent.futures.Future()
        _dress_participant(identity if identity is not None else mac,
                           {"device_mac": mac, "room_type": "device_session", **(attributes or {})})
        await self._server.simulate_job(room, fake_job=True)
        return await asyncio.wait_for(asyncio.wrap_future(self._watcher.result), START_TIMEOUT)

    async def close_session(self, served: ServedSession, reason: str) -> None:
        """End the job as a room would: shutdown callbacks (capture's flush) run before this returns."""
        served.loop.call_soon_threadsafe(served.ctx.shutdown, reason)
        await self.drain()

    async def drain(self) -> None:
        """Wait for every job to end (a crashed one ends by itself)."""
        await asyncio.wait_for(self._server.drain(timeout=int(CLOSE_TIMEOUT)), CLOSE_TIMEOUT + 5)

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await asyncio.wait_for(self._server.aclose(), CLOSE_TIMEOUT + 5)
        finally:
            if self._run is not None:
                self._run.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._run


def on_job_loop(served: ServedSession, work: Any) -> asyncio.Future[Any]:
    """Run a coroutine on the job's loop; the result is awaitable from the caller's loop."""
    return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, served.loop))


def _dress_participant(identity: str, attributes: dict[str, str]) -> None:
    # livekit's fake job room (ipc.mock_room.create_mock_room, one per process) has one remote
    # participant, "mock_user" with mock attributes: make it the toy, as the gateway would.
    from livekit.agents.ipc.mock_room import create_mock_room

    participant = next(iter(create_mock_room().remote_participants.values()))
    participant.identity, participant.attributes = identity, dict(attributes)
