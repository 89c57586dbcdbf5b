"""What the numbers were measured on: the machine, the versions and the code's commit."""

from __future__ import annotations

import contextlib
import os
import platform
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from tests.kits.mariadb import LOCAL, ensure_mariadb_running

REPO = Path(__file__).resolve().parent.parent


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def _mariadb_version() -> str:
    ensure_mariadb_running()
    with contextlib.closing(LOCAL.connect()) as conn, conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        return str(cur.fetchone()[0])


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def describe(argv: list[str]) -> dict[str, Any]:
    """Date, hardware, software versions, commit (and how many files differed from it), command."""
    changed = [line for line in _git("status", "--porcelain").splitlines() if line.strip()]
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": _memory_gib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "mariadb": _mariadb_version(),
        "aiohttp": _version("aiohttp"),
        "livekit_agents": _version("livekit-agents"),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "uncommitted_files": len(changed),
        "command": " ".join(["python -m bench", *argv]),
        "executable": sys.executable,
    }
