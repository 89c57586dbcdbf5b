"""Operator commands: doctor."""

from __future__ import annotations

import argparse
import asyncio

from voicelog.cli.views.words import plural
from voicelog.services.config import Settings


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add operator commands (doctor) to the command line."""
    doctor = commands.add_parser(
        "doctor", parents=[common],
        help="check config, spool, backlog, Manager, LiveKit and MQTT; one line each",
        description="Check what this box needs: config, spool and backup directory, the Manager "
                    "(reachable, secret accepted; nothing is stored), LiveKit settings, the MQTT "
                    "broker when enabled, and the conversation-memory store; parked or dead-letter "
                    "turns are a WARN line. Exit 1 if any check fails (0 with warnings: e.g. the "
                    "memory Redis down while the spool fallback works). Run it as the service user "
                    "so files it creates keep the right owner, with the unit's environment: "
                    "--env-file - < /etc/voicelog/voicelog.env",
        epilog="example (as root):\n  sudo -u voicelog /opt/voicelog/.venv/bin/voicelog --config "
               "/etc/voicelog/config.yaml --env-file - doctor < /etc/voicelog/voicelog.env",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    doctor.add_argument("--ship-only", action="store_true",
                        help="this box only ships (voicelog ship): skip the LiveKit check")
    doctor.set_defaults(handler=cmd_doctor)


def cmd_doctor(settings: Settings, args: argparse.Namespace) -> int:
    """Run every check, print one line each, exit 1 if any failed."""
    from voicelog.services.ops import run_checks

    checks = asyncio.run(run_checks(settings, livekit=not args.ship_only))
    for check in checks:
        print(check.line(), flush=True)
    failed = [check.name for check in checks if check.state == "FAIL"]
    warned = [check.name for check in checks if check.state == "WARN"]
    verdict = (f"{plural(len(failed), 'check')} failed: {', '.join(failed)}" if failed
               else "all checks passed")
    if warned:
        verdict += f"; {plural(len(warned), 'warning')}: {', '.join(warned)}"
    print(verdict)
    return 1 if failed else 0
