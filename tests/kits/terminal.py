"""A real terminal for tests: a command in a tmux pane of a chosen size, and what a person sees.

Each pane runs on a tmux server of its own (``tmux -L <name>``), so tests never touch anyone's
sessions. The command is followed by ``[exit N]`` and a pause, so the pane stays readable after
it ends.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.kits import REPO

TMUX_TIMEOUT = 10


def ensure_tmux() -> str:
    """The tmux binary; installed from Debian when missing (bounded), else a clear failure."""
    found = shutil.which("tmux")
    if found is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "tmux"], capture_output=True, timeout=300, check=False)
        found = shutil.which("tmux")
    if found is None:
        raise RuntimeError("tmux is needed for the terminal tests: apt-get install tmux")
    return found


@dataclass
class Pane:
    """One tmux pane running a command."""

    server: str

    def lines(self) -> list[str]:
        """The visible screen, one string per row, trailing blanks dropped."""
        shown = subprocess.run([ensure_tmux(), "-L", self.server, "capture-pane", "-p", "-t", "t"],
                               capture_output=True, text=True, timeout=TMUX_TIMEOUT, check=True).stdout
        lines = [line.rstrip() for line in shown.splitlines()]
        while lines and not lines[-1]:
            lines.pop()
        return lines

    def text(self) -> str:
        return "\n".join(self.lines())

    def wait_for(self, needle: str | Callable[[str], object], timeout: float = 60) -> str:
        """The screen once ``needle`` shows on it (or the predicate holds); fails with the screen after ``timeout``."""
        holds = needle if callable(needle) else (lambda text: needle in text)
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            if holds(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not on screen after {timeout}s:\n{text}")
            time.sleep(0.2)

    def press(self, *keys: str) -> None:
        """Send keys as typed (tmux key names such as ``C-c`` work)."""
        subprocess.run([ensure_tmux(), "-L", self.server, "send-keys", "-t", "t", *keys],
                       timeout=TMUX_TIMEOUT, check=True)


def voicelog_command(*args: str) -> list[str]:
    """``python main.py ARGS`` with this interpreter, as a user would run voicelog."""
    return [sys.executable, str(REPO / "main.py"), *args]


@contextlib.contextmanager
def terminal(command: Sequence[str], *, width: int = 80, height: int = 40, cwd: Path = REPO,
             env: dict[str, str] | None = None) -> Iterator[Pane]:
    """Run ``command`` in a fresh ``width`` x ``height`` tmux pane; the tmux server is killed after."""
    tmux = ensure_tmux()
    server = f"voicelog-test-{uuid.uuid4().hex[:10]}"
    shell = f"{shlex.join(command)}; echo \"[exit $?]\"; sleep 600"
    environment = {**os.environ, **(env or {}), "TERM": "xterm-256color"}
    environment.pop("COLUMNS", None)  # the pane's own size must decide
    environment.pop("LINES", None)
    subprocess.run([tmux, "-L", server, "-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", str(width),
                    "-y", str(height), "-c", str(cwd), shell], env=environment, timeout=TMUX_TIMEOUT, check=True)
    try:
        yield Pane(server)
    finally:
        subprocess.run([tmux, "-L", server, "kill-server"], capture_output=True, timeout=TMUX_TIMEOUT, check=False)
