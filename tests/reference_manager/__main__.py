"""Run the reference Manager by hand: `python -m tests.reference_manager --port 8002 ...`."""

import argparse
import asyncio
import signal
import sys

from tests.kits.mariadb import MariaDB, ensure_database, ensure_mariadb_running

from .schema import CONTENT_TYPES
from .server import REPORT_TIME_UNITS, ReferenceManager


def main(argv: list[str] | None = None) -> int:
    """Start MariaDB if needed, create the database if missing, serve until SIGINT/SIGTERM."""
    args = _parser().parse_args(argv)
    server = MariaDB(args.mysql_host, args.mysql_port, args.mysql_user, args.mysql_password)
    ensure_mariadb_running(server)
    ensure_database(args.database, server)
    asyncio.run(_serve(args, server))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.reference_manager", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--context", default="/xiaozhi", help="context path, e.g. /xiaozhi or /toy")
    parser.add_argument("--secret", default="test-secret", help="server.secret the Bearer token must equal")
    parser.add_argument("--database", default="voicelog_ref")
    parser.add_argument("--report-time-unit", choices=REPORT_TIME_UNITS, default="ms")
    parser.add_argument("--content-type", choices=sorted(CONTENT_TYPES), default="varchar")
    parser.add_argument("--honour-idempotency", action="store_true")
    parser.add_argument("--bind", action="append", default=[], metavar="MAC[=AGENT[:CONF]]",
                        help="bind a device, e.g. 68:25:dd:ba:39:78=agent1:2 (repeatable)")
    parser.add_argument("--mysql-host", default="127.0.0.1")
    parser.add_argument("--mysql-port", type=int, default=3306)
    parser.add_argument("--mysql-user", default="root")
    parser.add_argument("--mysql-password", default="")
    return parser


def parse_binding(text: str) -> tuple[str, str, int]:
    """Split "MAC[=AGENT[:CONF]]" into (mac, agent_id, chat_history_conf)."""
    mac, _, rest = text.partition("=")
    agent_id, _, conf = rest.partition(":")
    return mac, agent_id or "agent1", int(conf) if conf else 1


async def _serve(args: argparse.Namespace, server: MariaDB) -> None:
    manager = ReferenceManager(
        args.database, host=args.host, port=args.port, context=args.context, secret=args.secret,
        report_time_unit=args.report_time_unit, honour_idempotency=args.honour_idempotency,
        content_type=args.content_type, mariadb=server,
    )
    async with manager:
        for text in args.bind:
            await manager.bind_device(*parse_binding(text))
        print(manager.url, flush=True)
        await _until_signalled()


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


if __name__ == "__main__":
    sys.exit(main())
