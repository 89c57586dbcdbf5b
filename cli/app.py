"""voicelog's command line: ``python main.py <command>`` or the ``voicelog`` console script."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from voicelog.services.config import ConfigError, LogLevel, Settings, load_settings
from voicelog.services.ops import configure_logging, settings_secrets
from voicelog.services.spool import SpoolError

EPILOG = """examples:
  voicelog simulate --sessions 20 --turns 10      # drive simulated toys through the real capture path
  voicelog ship --once                             # deliver everything deliverable now, then exit
  voicelog start --config /etc/voicelog/config.yaml
  voicelog backups list --status pending
  voicelog memory show --mac 68:25:dd:ba:39:78     # what the device's next session starts with
configuration: --config PATH or $VOICELOG_CONFIG; override keys with VOICELOG__SECTION__KEY."""


def build_parser() -> argparse.ArgumentParser:
    """All commands and their options."""
    from voicelog.cli.commands import backups as backups_commands
    from voicelog.cli.commands import memory as memory_commands
    from voicelog.cli.commands import ops as ops_commands
    from voicelog.cli.commands import run as run_commands

    parser = argparse.ArgumentParser(prog="voicelog", description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config file (default: $VOICELOG_CONFIG, else built-in defaults)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run_commands.register(commands)
    backups_commands.register(commands)
    memory_commands.register(commands)
    ops_commands.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, load config once, run the chosen command; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        _print_config_error(exc)
        return 2
    _configure_logs(settings, args)
    try:
        return int(args.handler(settings, args) or 0)
    except ConfigError as exc:
        _print_config_error(exc)
        return 2
    except SpoolError as exc:  # the spool cannot be used at all (e.g. damaged on a full disk): say why
        print(f"voicelog: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("voicelog: interrupted; everything captured stays in the spool", file=sys.stderr)
        return 130


def _print_config_error(error: ConfigError) -> None:
    for problem in error.problems or (str(error),):  # one line each, so every line greps alike
        print(f"voicelog: configuration error: {problem}", file=sys.stderr)


def _configure_logs(settings: Settings, args: argparse.Namespace) -> None:
    logging_settings = settings.logging
    if getattr(args, "quiet_logs", False) and logging_settings.level in (LogLevel.DEBUG, LogLevel.INFO):
        logging_settings = logging_settings.model_copy(update={"level": LogLevel.WARNING})
    configure_logging(logging_settings, secrets=settings_secrets(settings))


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
