"""Operator commands: doctor."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    """Add operator commands (doctor) to the command line."""
