"""Support staff's commands for local backups: list, show, verify, replay, export, prune."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``backups`` command group."""
