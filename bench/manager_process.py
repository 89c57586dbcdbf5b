"""The reference Manager in its own process over a throwaway MariaDB database, and its rows.

A separate process keeps the Manager's event loop off the client's, as a real Manager is;
both still share this machine's two cores with MariaDB, which is what the ratios account for.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pymysql

from bench.common import SECRET
from tests.kits.mariadb import LOCAL, create_database, drop_database, ensure_mariadb_running

REPO = Path(__file__).resolve().parent.parent
AGENT_ID = "agent1"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ManagerProcess:
    """``python -m tests.reference_manager`` on a free loopback port; rows read over pymysql."""

    def __init__(self, database: str, log_file: Path) -> None:
        self.database = database
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/xiaozhi"
        self.pid = 0
        self._log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None
        self._mariadb_pid: int | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Spawn the server and wait until it prints its URL (tables exist by then)."""
        self._log_file.parent.mkdir(parents=True, exist_ok=True)
        with self._log_file.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "tests.reference_manager", "--port", str(self.port),
                 "--database", self.database, "--secret", SECRET, "--report-time-unit", "ms"],
                cwd=REPO, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
        self.pid = self._process.pid
        assert self._process.stdout is not None
        watchdog = threading.Timer(timeout, self._process.kill)  # readline would wait forever
        watchdog.start()
        try:
            line = self._process.stdout.readline().decode().strip()
        finally:
            watchdog.cancel()
        if not line.startswith("http"):
            self.stop()
            raise RuntimeError(f"reference Manager did not start (see {self._log_file}): {line!r}")

    def stop(self) -> None:
        """SIGTERM and wait; the server drains in well under a second."""
        if self._process is None:
            return
        process, self._process = self._process, None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def server_cpu_seconds(self) -> float:
        """CPU seconds used so far by the Manager process and the MariaDB server together.

        The bench's client, the Manager and MariaDB share the machine's cores; what the server
        side spends per turn tells how far client CPU alone can move the throughput.
        """
        if self._mariadb_pid is None:
            self._mariadb_pid = mariadb_pid()
        return sum(cpu_seconds(pid) for pid in (self.pid, self._mariadb_pid) if pid)

    def connect(self) -> pymysql.connections.Connection:
        """An autocommit connection to the bench database, UTC so DATETIMEs read as written."""
        conn = LOCAL.connect(self.database)
        with conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
        return conn

    def bind(self, macs: Iterable[str]) -> None:
        """Bind every MAC to one agent that keeps text (chat_history_conf 1)."""
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cur:
            cur.execute("INSERT IGNORE INTO ref_agent (id, chat_history_conf) VALUES (%s, 1)", (AGENT_ID,))
            cur.executemany("INSERT IGNORE INTO ref_device (mac_address, agent_id) VALUES (%s, %s)",
                            [(mac, AGENT_ID) for mac in macs])

    def truncate(self) -> None:
        """Empty the chat table between variants, so each starts from the same table size."""
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cur:
            cur.execute("TRUNCATE TABLE ai_agent_chat_history")

    def row_count(self) -> int:
        """Rows stored so far (MAX(id) after a truncate: cheap enough to poll)."""
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM ai_agent_chat_history")
            return int(cur.fetchone()[0])

    def rows(self) -> list[tuple[str, str, datetime, datetime]]:
        """(session_id, content, created_at, updated_at) of every row, in insertion (id) order."""
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cur:
            cur.execute("SELECT session_id, content, created_at, updated_at FROM ai_agent_chat_history"
                        " ORDER BY id")
            return list(cur.fetchall())

    def insert_times(self) -> list[float]:
        """When each row was inserted (server clock, epoch seconds), in id order."""
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cur:
            cur.execute("SELECT updated_at FROM ai_agent_chat_history ORDER BY id")
            return [epoch(row[0]) for row in cur.fetchall()]


def epoch(value: datetime) -> float:
    """A naive UTC DATETIME from MariaDB as epoch seconds."""
    return value.replace(tzinfo=UTC).timestamp()


def check_order(rows: list[tuple[str, str, datetime, datetime]],
                expected: dict[str, tuple[str, ...]]) -> dict[str, int]:
    """Compare stored rows with what each session said: lost, duplicated and out-of-order counts.

    Out of order means either insertion order or ``created_at`` (what the console sorts by)
    disagrees with conversation order.
    """
    by_session: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
    for session_id, content, created_at, _ in rows:
        by_session[session_id].append((content, created_at))
    lost = duplicated = out_of_order = 0
    for session_id, contents in expected.items():
        stored = by_session.pop(session_id, [])
        texts = [content for content, _ in stored]
        wanted, seen = set(contents), set(texts)
        lost += len(wanted - seen)
        duplicated += len(texts) - len(seen)
        first_seen = list(dict.fromkeys(t for t in texts if t in wanted))
        created = [c for _, c in stored]
        if first_seen != [c for c in contents if c in seen] or any(
                b <= a for a, b in zip(created, created[1:], strict=False)):
            out_of_order += 1
    return {"sessions": len(expected), "lost": lost, "duplicated": duplicated,
            "sessions_out_of_order": out_of_order, "unexpected_sessions": len(by_session)}


@contextlib.contextmanager
def running_manager(work_dir: Path, macs: Iterable[str] = ()) -> Iterator[ManagerProcess]:
    """A fresh database and a reference Manager process over it; both gone afterwards."""
    ensure_mariadb_running()
    database = create_database("voicelog_bench")
    manager = ManagerProcess(database, work_dir / "reference-manager.log")
    try:
        manager.start()
        manager.bind(macs)
        yield manager
    finally:
        manager.stop()
        drop_database(database)


def process_rss_mb(pid: int | None = None) -> float:
    """Resident memory of a process in MB, from /proc (no psutil needed)."""
    with open(f"/proc/{pid or os.getpid()}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def mariadb_pid() -> int | None:
    """The running MariaDB server's pid (mariadbd, or mysqld on older installs), or None."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                name = (entry / "comm").read_text(encoding="ascii").strip()
            except OSError:
                continue
            if name in ("mariadbd", "mysqld"):
                return int(entry.name)
    return None
