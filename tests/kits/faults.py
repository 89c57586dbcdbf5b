"""Helpers for fault tests: damaged files, a small real filesystem, fake LiveKit events,
a jumping clock, process memory, and a numbered turn generator to kill.

Run the generator: python -m tests.kits.faults generate SPOOL SESSION_ID... ; it writes numbered
turns ("n <k> <words of the session>") at random into the sessions, forever, printing
"ack <session> <k>" once each turn is durable (or refused: an erased session's are counted, not
stored). It prints "ready" first, once it is set up. Restarted, it carries on from the last
number stored per session.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.kits.settings import config_file
from voicelog.services.backup import BackupWriter
from voicelog.services.capture import ChatHistoryService
from voicelog.services.config import ChatHistorySettings
from voicelog.services.domain import ChatType, resolve_identity
from voicelog.services.spool import Spool, open_spool

PAGE = 4096


# --- spools with known content -----------------------------------------------------------------

def room(n: int, mac_hex: str = "6825ddba3978") -> str:
    """A gateway-style room name (the session id) for test session ``n``."""
    return f"00000000-0000-4000-8000-{n:012d}_{mac_hex}"


def fill_spool(backup_dir: Path, sessions: int, turns: int, *, end: bool = True) -> dict[str, list[str]]:
    """Capture numbered turns into ``backup_dir/spool.db`` with backups; {session: contents}."""
    spool = open_spool(backup_dir / "spool.db")
    writer = BackupWriter(backup_dir)
    expected: dict[str, list[str]] = {}
    try:
        for n in range(sessions):
            service = ChatHistoryService(spool, resolve_identity(room(n)), ChatHistorySettings(),
                                         backups=writer)
            for i in range(1, turns + 1):
                service.add_message(ChatType.USER if i % 2 else ChatType.AGENT, f"s{n} turn {i} " + "x" * 60)
            if end:
                spool.end_session(service.session_id, ended_ms=int(time.time() * 1000), reason="test")
            service.write_backup()
            expected[service.session_id] = [t.content for t in spool.turns(service.session_id)]
    finally:
        spool.close()
    return expected


def checkpoint(spool_path: Path) -> None:
    """Move everything from the WAL into the main file, so damage to it hits real rows."""
    import sqlite3

    conn = sqlite3.connect(spool_path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def truncate(path: Path, fraction: float) -> None:
    """Cut a file to ``fraction`` of its length (a torn write at the end)."""
    os.truncate(path, int(path.stat().st_size * fraction))


def zero_fill(path: Path, start: int = 0, length: int | None = None) -> None:
    """Overwrite bytes with zeros (a lost write after power loss); the whole file by default."""
    size = path.stat().st_size
    length = size - start if length is None else length
    with open(path, "r+b") as handle:
        handle.seek(start)
        handle.write(bytes(min(length, size - start)))


def flip_bits(path: Path, offsets: list[int], bit: int = 0x10) -> None:
    """Flip one bit at each offset (media bit rot)."""
    data = bytearray(path.read_bytes())
    for offset in offsets:
        data[offset] ^= bit
    path.write_bytes(bytes(data))


def leaf_page_headers(path: Path) -> list[int]:
    """Offsets of the b-tree page headers of table leaf pages (type 0x0D) after page 1."""
    data = path.read_bytes()
    return [p * PAGE for p in range(1, len(data) // PAGE) if data[p * PAGE] == 0x0D]


# --- a small real filesystem -------------------------------------------------------------------

@contextlib.contextmanager
def small_filesystem(mount_point: Path, size_kib: int) -> Iterator[Path]:
    """A real tmpfs of ``size_kib`` mounted at ``mount_point`` (root only): it really fills up."""
    mount_point.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0700", "tmpfs",
                           str(mount_point)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"cannot mount a tmpfs (the disk-full tests need root): {done.stderr}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill_disk(directory: Path) -> Path:
    """Write a filler file until the filesystem refuses (ENOSPC); returns the filler."""
    filler = directory / "filler.bin"
    # Unbuffered, so nothing is left to flush (and fail) at close.
    with open(filler, "wb", buffering=0) as handle, contextlib.suppress(OSError):
        for size in (1 << 20, 4096, 512, 1):  # big blocks first, then fill the crumbs
            while handle.write(b"\xa5" * size):
                pass
    return filler


# --- fake LiveKit events, shaped like livekit-agents 1.8.9's ------------------------------------

class FakeSpeechHandle:
    """What ChatCapture reads from a SpeechHandle: chat_items, interrupted, done callbacks."""

    def __init__(self) -> None:
        self.chat_items: list[Any] = []
        self.interrupted = False
        self._callbacks: list[Any] = []

    def add_done_callback(self, callback: Any) -> None:
        """Called with the handle once the reply is done."""
        self._callbacks.append(callback)

    async def wait_for_playout(self) -> None:
        """The fake reply is never still playing."""
        return

    def finish(self, text: str, interrupted: bool = False) -> None:
        """The reply was played (or cut off): hand its heard text to the callbacks."""
        from livekit.agents import llm

        self.chat_items = [llm.ChatMessage(role="assistant", content=[text], interrupted=interrupted)]
        self.interrupted = interrupted
        for callback in self._callbacks:
            callback(self)


def user_final(text: str) -> Any:
    """A final STT transcript event."""
    from livekit.agents.voice.events import UserInputTranscribedEvent

    return UserInputTranscribedEvent(transcript=text, is_final=True)


def user_committed(text: str) -> Any:
    """The committed user message at end of turn."""
    from livekit.agents import llm
    from livekit.agents.voice.events import ConversationItemAddedEvent

    return ConversationItemAddedEvent(item=llm.ChatMessage(role="user", content=[text]))


def speech_created(handle: FakeSpeechHandle) -> Any:
    """A reply scheduled by the LLM (validation skipped: the handle is a fake)."""
    from livekit.agents.voice.events import SpeechCreatedEvent

    return SpeechCreatedEvent.model_construct(type="speech_created", user_initiated=False,
                                              source="generate_reply", speech_handle=handle,
                                              created_at=time.time())


def exchange(capture: Any, user: str, agent: str, *, interrupted: bool = False) -> None:
    """One user turn and one reply through the real handlers, as LiveKit would emit them."""
    capture.on_user_input_transcribed(user_final(user))
    handle = FakeSpeechHandle()
    capture.on_speech_created(speech_created(handle))
    capture.on_conversation_item_added(user_committed(user))
    handle.finish(agent, interrupted)


@dataclass
class Heartbeat:
    """Ticks on the event loop, to prove it kept running (no handler blocked or crashed it)."""

    interval: float = 0.01
    ticks: int = 0
    longest_gap: float = 0.0
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    def start(self) -> Heartbeat:
        """Begin ticking on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._beat())
        return self

    async def _beat(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            self.longest_gap = max(self.longest_gap, now - last)
            self.ticks, last = self.ticks + 1, now

    async def stop(self) -> None:
        """Stop ticking."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


# --- clocks and memory ------------------------------------------------------------------------------

class JumpingClock:
    """A wall clock in ms that advances by ``step`` per reading and can be jumped back."""

    def __init__(self, start_ms: int | None = None, step: int = 7) -> None:
        self.ms = int(time.time() * 1000) if start_ms is None else start_ms
        self.step = step

    def __call__(self) -> int:
        self.ms += self.step
        return self.ms

    def jump(self, delta_ms: int) -> None:
        """Move the clock by ``delta_ms`` (negative: back, as after an NTP correction)."""
        self.ms += delta_ms


def rss_kib(pid: int) -> int:
    """Resident memory of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


# --- processes ------------------------------------------------------------------------------------

def ship_config(tmp_path: Path, manager: Any, **shipper: Any) -> Path:
    """A config file for ``main.py ship`` against the reference Manager, fast timings."""
    preset = {"chat_history": {"batch_size": 1, "send_interval": 0.1},
              "shipper": {"retry_initial": 0.02, "retry_max": 0.2, "poll_interval": 0.05,
                          "reap_interval": 0.1, "drain_timeout": 2, **shipper},
              "logging": {"level": "WARNING", "format": "json"}}
    return config_file(tmp_path, name=f"ship-{uuid.uuid4().hex[:6]}.yaml", manager=manager, preset=preset)


def _last_number(spool: Spool, session_id: str) -> int:
    turns = spool.turns(session_id)
    return int(turns[-1].content.split()[1]) if turns else 0


def words_of(session_id: str) -> str:
    """A word only this session's turns hold, to search files for after its erasure."""
    return "said-" + hashlib.sha256(session_id.encode()).hexdigest()[:12]


def generate(spool_path: str, session_ids: list[str]) -> None:
    """Write numbered turns ("n <k> <words_of(session)>") forever, half one-shot, half opened then sealed."""
    spool = open_spool(spool_path, busy_timeout_ms=200)
    services = [ChatHistoryService(spool, resolve_identity(s), ChatHistorySettings(),
                                   retry_interval=0.05) for s in session_ids]
    numbers = [_last_number(spool, s.session_id) for s in services]
    rng = random.Random(os.getpid())
    print("ready", flush=True)  # started up: a kill from now on lands while turns are written
    while True:
        index = rng.randrange(len(services))
        service, numbers[index] = services[index], numbers[index] + 1
        text = f"n {numbers[index]} {words_of(service.session_id)}"
        kind = ChatType.USER if numbers[index] % 2 else ChatType.AGENT
        if numbers[index] % 2:
            service.add_message(kind, text)
        else:
            service.update_turn(service.open_turn(kind, text), text, seal=True)
        while service.retry_held_writes():  # the write lock is busy: wait, never ack early
            time.sleep(0.01)
        print(f"ack {index} {numbers[index]}", flush=True)
        time.sleep(0.004)


if __name__ == "__main__":
    from voicelog.services.config import LoggingSettings
    from voicelog.services.ops import configure_logging

    configure_logging(LoggingSettings(level="ERROR"))
    if sys.argv[1] == "generate":
        generate(sys.argv[2], sys.argv[3:])
