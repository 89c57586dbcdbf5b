"""The commands that run things: start, ship, simulate."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from voicelog.services.config import Settings


def register(commands: argparse._SubParsersAction) -> None:
    """Add start, ship and simulate to the command line."""
    start = commands.add_parser("start", help="run the LiveKit worker and the shipper (the daemon)")
    start.set_defaults(handler=cmd_start)

    ship = commands.add_parser("ship", help="run only the shipper (delivery to the Manager)")
    ship.add_argument("--once", action="store_true",
                      help="deliver everything deliverable now and exit (0 = all delivered)")
    ship.add_argument("--max-attempts", type=int, default=5,
                      help="with --once: tries per turn on retryable failures (default 5)")
    ship.set_defaults(handler=cmd_ship)

    sim = commands.add_parser(
        "simulate", help="run simulated toy sessions through real AgentSessions and capture them",
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
        "talk", help="type as the child and read the toy's replies, through the production entrypoint",
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
    if args.config:
        # Job processes load config themselves; point them at the same file.
        os.environ["VOICELOG_CONFIG"] = str(Path(args.config).resolve())
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
    """Run the shipper alone, forever or once."""
    from voicelog.agent.daemon import run_shipper, ship_once_with_memory
    from voicelog.services.domain import ShipperAlreadyRunning

    if not settings.manager_api.url:
        print("voicelog: manager_api.url is not set; nothing to ship to", file=sys.stderr)
        return 2
    try:
        if not args.once:
            asyncio.run(run_shipper(settings))
            return 0
        summary, memory = asyncio.run(ship_once_with_memory(settings, max(1, args.max_attempts)))
    except ShipperAlreadyRunning as exc:
        print(f"voicelog: {exc}", file=sys.stderr)
        return 3
    if summary.repaired:
        print(f"repaired: {sum(summary.repaired.values())} turn(s) of {len(summary.repaired)} session(s) "
              "had no session row (left by an older voicelog); gave them one, MAC from the room name")
    print(f"delivered {summary.delivered}, parked {summary.parked}, dead-lettered "
          f"{summary.dead_lettered}, still pending {summary.held}; spool now: "
          f"{summary.remaining or 'nothing undelivered'}")
    if memory is not None:
        print("memory: every sealed turn is in Redis" if memory else
              "memory: Redis unreachable, turns wait in the spool for the next push")
    if summary.repairs_waiting:
        print(f"{summary.repairs_waiting} damaged spool(s) set aside in quarantine wait for free disk space "
              "to be merged back (see the log: spool_repair_deferred); their turns are delivered after")
    return 0 if not summary.remaining and not summary.repairs_waiting else 1


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    """Run simulated sessions and print what was captured (and delivered)."""
    from voicelog.agent.simulation.run import (
        FAST_TIME_SCALE,
        devices_from_script,
        generated_devices,
        simulate,
    )

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
    print(summary.to_json() if args.json else _describe(summary))
    return 0 if summary.sessions_failed == 0 and summary.lost == 0 else 1


def _memory_line(summary) -> str:
    started = [p for p in summary.per_session if p.get("memory")]
    if not started:
        return "memory: off (memory.enabled: false), or no session had a valid MAC"
    remembered = sum(1 for p in started if p["preloaded_turns"])
    line = (f"memory: {summary.preloaded_turns} turns preloaded into {remembered} of "
            f"{len(summary.per_session)} sessions")
    fell_back = sum(1 for p in started if p["memory"]["fell_back"])
    if fell_back:
        line += f"; {fell_back} read from the spool because Redis failed"
    if summary.memory_flushed is False:
        line += "; NOT everything reached Redis (the daemon pushes the rest when Redis is back)"
    return line


def _describe(summary) -> str:
    lines = [
        f"simulated {summary.sessions} sessions in {summary.seconds:.1f} s "
        f"({summary.sessions_failed} failed)",
        f"captured {summary.user_turns} user turns and {summary.agent_turns} agent replies "
        f"({summary.interrupted} interrupted), skipped {summary.skipped_empty} empty, lost {summary.lost}",
        f"spool: {summary.spool}   backups: {summary.backup_dir}/",
        _memory_line(summary),
    ]
    if summary.delivery:
        lines.append("delivery: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.delivery.items())))
    else:
        lines.append("delivery: no Manager configured (set manager_api.url); turns wait in the spool")
    return "\n".join(lines)
