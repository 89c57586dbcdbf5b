"""The commands that run things: start, ship, simulate."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from voicelog.services.config import Settings

SHIP_EPILOG = """exit codes of --once:
  0  everything is delivered (nothing undelivered is left in the spool)
  1  only parked or dead-letter turns (or turns still being captured) are left: parked and
     dead-letter ones need a person (bind the device, fix the cause); or a damaged spool set
     aside waits for free disk space to be merged back
  2  configuration error
  3  another shipper (the daemon) owns the spool: it delivers
  4  the Manager refuses our secret (MANAGER_API_SECRET)
  5  pending turns are left because the Manager gave no answer or did not take them in time
     (down, too slow or failing), or its endpoint does not answer as the Manager (a redirect,
     404/405: check manager_api.url); they stay pending for the next run or the daemon
  130 interrupted
Without --once, ship runs until SIGTERM/SIGINT and exits 0 (3 if another shipper runs)."""
START_DESCRIPTION = """Run the daemon: the LiveKit worker (one job process per device session, each capturing
every turn into the spool) and the shipper (delivery to the Manager), with /healthz, /readyz
and /metrics on http.listen. Needs LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET. /readyz
is ready only once the worker is registered with LiveKit. SIGTERM drains and exits 0."""
SHIP_DESCRIPTION = """Run only the shipper: deliver what the spool holds to the Manager (manager_api.url),
as the daemon does, for a box where capture runs elsewhere or to catch up a backlog. --once
delivers what is deliverable now and exits, within --deadline seconds whatever the Manager's
state."""
EXIT_UNDELIVERED, EXIT_LOCKED, EXIT_SECRET_REFUSED, EXIT_MANAGER_SILENT = 1, 3, 4, 5
DEFAULT_DEADLINE = 60.0


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add start, ship and simulate to the command line."""
    start = commands.add_parser("start", help="run the LiveKit worker and the shipper (the daemon)",
                                description=START_DESCRIPTION, parents=[common],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    start.set_defaults(handler=cmd_start)

    ship = commands.add_parser("ship", help="run only the shipper (delivery to the Manager)",
                               description=SHIP_DESCRIPTION, epilog=SHIP_EPILOG, parents=[common],
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    ship.add_argument("--once", action="store_true",
                      help="deliver everything deliverable now and exit (exit codes below)")
    ship.add_argument("--max-attempts", type=int, default=5,
                      help="with --once: tries per turn on retryable failures (default 5)")
    ship.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE, metavar="SECONDS",
                      help=f"with --once: stop trying after this long (default {DEFAULT_DEADLINE:g}); "
                           "a request in flight may add up to manager_api.timeout")
    ship.set_defaults(handler=cmd_ship)

    sim = commands.add_parser(
        "simulate", help="run simulated toy sessions through real AgentSessions and capture them",
        parents=[common],
        description="Drive N simulated device sessions through real livekit AgentSessions with "
                    "scripted STT/LLM/TTS (no LiveKit server), into the spool and backups; "
                    "delivers to the Manager when manager_api.url is set.")
    sim.add_argument("--sessions", type=int, default=5, help="concurrent sessions (default 5)")
    sim.add_argument("--turns", type=int, default=6, help="turns per session (default 6)")
    sim.add_argument("--script", type=Path,
                     help='JSON lines: {"mac": ..., "turns": [{"user", "agent", "barge_in_after_chars"}]}')
    sim.add_argument("--realtime", action="store_true", help="play speech at real-time speed")
    sim.add_argument("--time-scale", type=float, help="simulated/real duration ratio (default 0.02)")
    sim.add_argument("--no-deliver", action="store_true", help="capture only, even if a Manager is set")
    sim.add_argument("--json", action="store_true", help="print a machine-readable summary")
    sim.set_defaults(handler=cmd_simulate, quiet_logs=True)

    talk = commands.add_parser(
        "talk", parents=[common], help="type as the child and read the toy's replies, through the production entrypoint",
        description="A text console to the agent `start` runs (your agent.factory, or the built-in one), "
                    "with no LiveKit server: each line you type (or pipe) is the child's turn, the toy's "
                    "reply is printed, and the session is captured, remembered and delivered like a real "
                    "one. With agent.stt/llm/tts set to \"scripted\" it needs no credentials at all.",
        epilog="exit codes: 0 end of input after the last reply; 1 the session failed; 2 bad arguments "
               "or an agent that cannot be loaded; 130 Ctrl-C (the session is still flushed)\n"
               "example:\n  printf 'hello\\nwhat is my name?\\n' | VOICELOG__AGENT__STT=scripted "
               "VOICELOG__AGENT__LLM=scripted VOICELOG__AGENT__TTS=scripted voicelog talk --mac 68:25:dd:ba:39:78",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    talk.add_argument("--mac", required=True, help="the toy's MAC address (any common notation)")
    talk.add_argument("--session", help="the session id (room name); default <uuid4>_<mac hex> as the gateway makes")
    talk.set_defaults(handler=cmd_talk, quiet_logs=True)


def cmd_start(settings: Settings, args: argparse.Namespace) -> int:
    """Run the daemon until SIGTERM."""
    from voicelog.agent.daemon import run_daemon
    from voicelog.agent.worker import build_server, check_livekit_env

    check_livekit_env()
    _load_agent_or_fail(settings)
    if settings.source != "<defaults>":
        # Job processes load config themselves; point them at the same file.
        os.environ["VOICELOG_CONFIG"] = settings.source
    return asyncio.run(run_daemon(settings, build_server(settings)))


def cmd_talk(settings: Settings, args: argparse.Namespace) -> int:
    """Run one typed session through the production entrypoint."""
    from voicelog.agent.talk import talk

    if args.session is not None and not args.session.strip():
        print("voicelog: --session must not be empty", file=sys.stderr)
        return 2
    return asyncio.run(talk(settings, args.mac, args.session))


def _load_agent_or_fail(settings: Settings) -> None:
    """Import the agent factory and plugins now, so a broken one stops start before any session."""
    from voicelog.agent.factory import FactoryError
    from voicelog.agent.models import ModelSetupError
    from voicelog.agent.worker import prepare_agent
    from voicelog.services.config import ConfigError

    try:
        prepare_agent(settings)
    except (FactoryError, ModelSetupError) as exc:
        raise ConfigError(str(exc)) from exc


def cmd_ship(settings: Settings, args: argparse.Namespace) -> int:
    """Run the shipper alone, forever or once (bounded by --deadline)."""
    from voicelog.agent.daemon import run_shipper, ship_once
    from voicelog.cli.views.runs import ship_once_lines
    from voicelog.services.domain import ShipperAlreadyRunning

    if not settings.manager_api.url:
        print("voicelog: manager_api.url is not set; nothing to ship to", file=sys.stderr)
        return 2
    if args.once and args.deadline <= 0:
        print("voicelog: --deadline must be more than 0 seconds", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        if not args.once:
            asyncio.run(run_shipper(settings))
            return 0
        summary = asyncio.run(ship_once(settings, max(1, args.max_attempts), args.deadline))
    except ShipperAlreadyRunning as exc:
        print(f"voicelog: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    print("\n".join(ship_once_lines(summary, settings, time.monotonic() - started)))
    code = ship_once_exit_code(summary)
    return 1 if code == 0 and summary.repairs_waiting else code


def ship_once_exit_code(summary) -> int:
    """The exit code of ``ship --once`` (see SHIP_EPILOG): the cause a person must act on first."""
    from voicelog.services.shipping import StopReason

    if summary.stopped is StopReason.SECRET_REFUSED:
        return EXIT_SECRET_REFUSED
    if summary.remaining.get("pending"):
        return EXIT_MANAGER_SILENT
    return EXIT_UNDELIVERED if summary.remaining else 0


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    """Run simulated sessions and print what was captured (and delivered)."""
    from voicelog.agent.simulation.run import (
        FAST_TIME_SCALE,
        devices_from_script,
        generated_devices,
        simulate,
    )
    from voicelog.cli.views.runs import simulate_lines

    if args.sessions < 1 or args.turns < 1:
        print("voicelog: --sessions and --turns must be at least 1", file=sys.stderr)
        return 2
    try:
        devices = (devices_from_script(args.script) if args.script
                   else generated_devices(args.sessions, args.turns))
    except (OSError, ValueError) as exc:
        print(f"voicelog: cannot read script: {exc}", file=sys.stderr)
        return 2
    scale = 1.0 if args.realtime else (args.time_scale or FAST_TIME_SCALE)
    summary = asyncio.run(simulate(settings, devices, time_scale=scale, deliver=not args.no_deliver))
    print(summary.to_json() if args.json else "\n".join(simulate_lines(summary, settings)))
    return 0 if summary.sessions_failed == 0 and summary.lost == 0 else 1

