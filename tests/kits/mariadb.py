"""Test helpers that make sure the local MariaDB is up and hand out throwaway databases."""

import os
import re
import shutil
import subprocess
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import pymysql

START_COMMAND = (
    "start-stop-daemon", "--start", "--oknodo", "--background", "--exec", "/usr/sbin/mariadbd",
)
_SOCKET_DIR = "/run/mysqld"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")


@dataclass(frozen=True)
class MariaDB:
    """Where the test MariaDB listens and who we log in as."""

    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = ""

    def connect(self, database: str | None = None) -> pymysql.connections.Connection:
        """Open a short-lived admin connection (autocommit, utf8mb4)."""
        return pymysql.connect(
            host=self.host, port=self.port, user=self.user, password=self.password,
            database=database, charset="utf8mb4", autocommit=True, connect_timeout=2,
        )


LOCAL = MariaDB()


def ensure_mariadb_running(server: MariaDB = LOCAL, timeout: float = 30.0) -> None:
    """Start the local mariadbd if it does not answer, then wait (bounded) until it does."""
    if _answers(server):
        return
    _prepare_socket_dir()
    subprocess.run(START_COMMAND, check=True, capture_output=True)
    deadline = time.monotonic() + timeout
    while not _answers(server):
        if time.monotonic() > deadline:
            raise RuntimeError(f"MariaDB did not answer on {server.host}:{server.port} in {timeout}s")
        time.sleep(0.2)


def _answers(server: MariaDB) -> bool:
    """Say whether the server accepts a login, which is stricter than an open port."""
    try:
        server.connect().close()
    except pymysql.err.OperationalError:
        return False
    return True


def _prepare_socket_dir() -> None:
    # /run is a tmpfs: after a reboot mariadbd (running as mysql) cannot create its socket dir.
    if not os.path.isdir(_SOCKET_DIR):
        os.makedirs(_SOCKET_DIR, exist_ok=True)
        shutil.chown(_SOCKET_DIR, "mysql", "mysql")


def ensure_database(name: str, server: MariaDB = LOCAL) -> str:
    """Create database `name` (utf8mb4) if it does not exist yet; return the name."""
    _check_name(name)
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4")
    return name


def create_database(prefix: str = "voicelog_test", server: MariaDB = LOCAL) -> str:
    """Create a fresh, uniquely named database and return its name."""
    return ensure_database(f"{prefix}_{uuid.uuid4().hex[:12]}", server)


def drop_database(name: str, server: MariaDB = LOCAL) -> None:
    """Drop database `name` if it exists."""
    _check_name(name)
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


@contextmanager
def throwaway_database(prefix: str = "voicelog_test", server: MariaDB = LOCAL) -> Iterator[str]:
    """Yield the name of a fresh database that is dropped afterwards."""
    name = create_database(prefix, server)
    try:
        yield name
    finally:
        drop_database(name, server)


def _check_name(name: str) -> None:
    # Names are spliced into DDL (identifiers cannot be bound parameters), so allow only safe ones.
    if not _SAFE_NAME.match(name):
        raise ValueError(f"unsafe database name: {name!r}")
