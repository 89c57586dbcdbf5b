"""voicelog's command line: ``python main.py <command>`` or the ``voicelog`` console script."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from voicelog.services.config import (
    ConfigError,
    LogLevel,
    Settings,
    load_settings,
    read_environment_file,
)
from voicelog.services.ops import configure_logging, settings_secrets
from voicelog.services.spool import SpoolError

EPILOG = """examples:
  voicelog simulate --sessions 20 --turns 10      # drive simulated toys through the real capture path
  voicelog ship --once                             # deliver everything deliverable now, then exit
  voicelog start --config /etc/voicelog/config.yaml
  voicelog top                                     # a live view of the box
  voicelog backups list --status pending
  voicelog memory show --mac 68:25:dd:ba:39:78     # what the device's next session starts with
configuration: --config PATH or $VOICELOG_CONFIG; override keys with VOICELOG__SECTION__KEY;
  --env-file PATH reads a systemd EnvironmentFile (e.g. /etc/voicelog/voicelog.env, "-" for stdin).
  Both options work before or after the command. Relative paths in the config file are relative
  to its folder (without a config file: to the current folder).
exit codes: 0 done; 1 the command found a problem (see its summary); 2 bad configuration or
  arguments; 130 interrupted; 141 the reader of stdout went away (e.g. `| head`).
  `ship --once` adds its own (see `voicelog ship --help`)."""
# Exit status when whoever reads our output closes the pipe (`voicelog ... | head`): what a
# process killed by SIGPIPE reports in a shell (128 + 13), so `set -o pipefail` sees it as cut.
EXIT_PIPE_CLOSED = 141
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130
CONFIG_HELP = "YAML config file (default: $VOICELOG_CONFIG, else built-in defaults)"
ENV_FILE_HELP = ("read environment variables from a systemd EnvironmentFile first "
                 "(the unit's secrets, e.g. /etc/voicelog/voicelog.env; '-' reads standard input)")


def global_options(*, suppress: bool) -> argparse.ArgumentParser:
    """``--config`` and ``--env-file``: on the top parser, and (``suppress``) on every command.

    On the commands the defaults are suppressed, so a value given before the command is not
    overwritten by the command's own default; given in both places, the later one wins.
    """
    parent = argparse.ArgumentParser(add_help=False)
    default = argparse.SUPPRESS if suppress else None
    group = parent.add_argument_group("configuration (before or after the command)")
    group.add_argument("--config", metavar="PATH", default=default, help=CONFIG_HELP)
    group.add_argument("--env-file", metavar="PATH", default=default, help=ENV_FILE_HELP)
    return parent


def build_parser() -> argparse.ArgumentParser:
    """All commands and their options."""
    from voicelog.cli.commands import backups as backups_commands
    from voicelog.cli.commands import memory as memory_commands
    from voicelog.cli.commands import ops as ops_commands
    from voicelog.cli.commands import run as run_commands
    from voicelog.cli.commands import top as top_commands

    parser = argparse.ArgumentParser(prog="voicelog", description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     parents=[global_options(suppress=False)])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = global_options(suppress=True)
    run_commands.register(commands, common)
    backups_commands.register(commands, common)
    memory_commands.register(commands, common)
    ops_commands.register(commands, common)
    top_commands.register(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, load config once, run the chosen command; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.env_file:
            os.environ.update(read_environment_file(args.env_file))
        settings = load_settings(args.config)
    except ConfigError as exc:
        _print_config_error(exc)
        return EXIT_CONFIG
    _configure_logs(settings, args)
    for notice in settings.notices():
        print(f"voicelog: warning: {notice}", file=sys.stderr)
    try:
        code = int(args.handler(settings, args) or 0)
        sys.stdout.flush()  # inside the try: a reader gone away is noticed here, not at exit
        return code
    except ConfigError as exc:
        _print_config_error(exc)
        return EXIT_CONFIG
    except SpoolError as exc:  # the spool cannot be used at all (e.g. damaged on a full disk): say why
        print(f"voicelog: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        print("voicelog: interrupted; everything captured stays in the spool", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _reader_went_away()


def _reader_went_away() -> int:
    """The reader of stdout closed it (``| head``): stop quietly, as a command killed by SIGPIPE.

    Python would report the unflushed rest again at exit, so stdout is pointed at /dev/null
    first (the recipe in the ``signal`` module's documentation).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (tests): nothing to flush later
        pass
    finally:
        os.close(devnull)
    return EXIT_PIPE_CLOSED


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
