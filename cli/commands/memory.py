"""``voicelog memory show|forget``: what a device's next session would remember, and forgetting it."""

from __future__ import annotations

import argparse
import asyncio
import sys

from rich.console import Console

from voicelog.services.config import Settings
from voicelog.services.domain import normalise_mac

EPILOG = """examples:
  voicelog memory show --mac 68:25:dd:ba:39:78
  voicelog memory show --mac 68:25:dd:ba:39:78 --json
  voicelog memory forget --mac 68:25:dd:ba:39:78
exit: 0 done (show: read, also from the spool when Redis failed; forget: done in every store),
1 show: nothing could be read / forget: Redis unreachable (forgotten here, queued for Redis),
2 bad input or configuration."""
SHOW_BUDGET_MS = 2000  # a person may wait longer than a session start; still bounded


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the ``memory`` command group."""
    group = commands.add_parser("memory", parents=[common], help="show or forget a device's conversation memory",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = group.add_subparsers(dest="memory_command", metavar="ACTION", required=True)
    show = sub.add_parser("show", parents=[common], help="print what the device's next session would be started with",
                          epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    show.add_argument("--mac", type=_device_mac, required=True, help="the device (any common MAC notation)")
    show.add_argument("--json", action="store_true", help="print a JSON object (turns oldest first)")
    show.set_defaults(handler=cmd_show, quiet_logs=True)
    forget = sub.add_parser("forget", parents=[common], help="erase the device's memory from both stores (the turns stay for "
                            "delivery and backups)", epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    forget.add_argument("--mac", type=_device_mac, required=True, help="the device (any common MAC notation)")
    forget.set_defaults(handler=cmd_forget, quiet_logs=True)


def _device_mac(text: str) -> str:
    mac = normalise_mac(text)
    if mac is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a MAC address (e.g. 68:25:dd:ba:39:78)")
    return mac


def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    """Print the device's memory; exit 1 only when no store could be read."""
    from voicelog.cli.views.backups import print_json
    from voicelog.cli.views.memory import show_memory
    from voicelog.services.memory import Outcome, open_memory_reader

    if args.mac in settings.chat_history.opt_out_macs or not settings.memory.enabled:
        why = "opted out" if settings.memory.enabled else "memory is off (memory.enabled: false)"
        if args.json:
            print_json({"mac": args.mac, "turns": [], "store": "none", "reason": why})
        else:
            print(f"{args.mac}: {why}; no memory is kept or read")
        return 0
    spool = _open_spool(settings)
    if spool is None:
        return 1
    reader = open_memory_reader(settings, spool)

    async def read():  # noqa: ANN202 - the Preload
        try:
            return await reader.read(args.mac, budget_ms=max(SHOW_BUDGET_MS, settings.memory.read_timeout_ms))
        finally:
            await reader.aclose()

    try:
        preload = asyncio.run(read())
    finally:
        spool.close()
    if args.json:
        print_json({"mac": args.mac, **preload.to_dict()})
    else:
        show_memory(Console(), args.mac, preload)
    if preload.outcome in (Outcome.TIMEOUT, Outcome.ERROR):
        print(f"voicelog: memory could not be read: {preload.reason}", file=sys.stderr)
        return 1
    return 0


def cmd_forget(settings: Settings, args: argparse.Namespace) -> int:
    """Forget the device in both stores; exit 1 when Redis could not be told (queued)."""
    from voicelog.cli.views.memory import forget_lines
    from voicelog.services.domain import wall_ms
    from voicelog.services.memory import MemoryEraser

    spool = _open_spool(settings)
    if spool is None:
        return 1
    try:
        report = MemoryEraser(settings.memory, spool).forget(args.mac, now_ms=wall_ms())
    finally:
        spool.close()
    forget_lines(Console(), args.mac, report)
    return 0 if report.complete else 1


def _open_spool(settings: Settings):  # noqa: ANN202 - the host's Spool, or None (said why)
    from voicelog.cli.views.backups import spool_for_support
    from voicelog.services.spool import STORAGE_ERRORS, SpoolError

    try:
        return spool_for_support(settings, create=True)
    except (*STORAGE_ERRORS, SpoolError) as exc:
        print(f"voicelog: cannot open the spool {settings.chat_history.spool_file}: {exc}", file=sys.stderr)
        return None
