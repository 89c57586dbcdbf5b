"""What a new user meets first: options where they type them, help that explains, words that read right, links that work."""

from __future__ import annotations

import argparse
import json
import re

from tests.kits import REPO
from tests.kits.settings import config_file
from voicelog.cli.app import build_parser, main


def every_command(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command words, parser) for every command and sub-command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from every_command(sub, (*path, name))
    if path:
        yield path, parser


def test_config_and_env_file_work_before_or_after_any_command_and_every_help_names_them():
    """`voicelog CMD --config X` and `voicelog --config X CMD` mean the same, for every command."""
    parser = build_parser()
    commands = [(words, sub) for words, sub in every_command(parser) if not sub._subparsers]
    assert {words for words, _ in commands} >= {("simulate",), ("ship",), ("start",), ("doctor",), ("top",),
                                                ("backups", "list"), ("backups", "verify")}
    for words, sub in commands:
        mac = ["--mac", "68:25:dd:ba:39:78"]
        required = {("backups", "show"): ["SESSION"], ("memory", "show"): mac, ("memory", "forget"): mac,
                    ("talk",): mac}.get(words, [])
        after = parser.parse_args([*words, *required, "--config", "c.yaml", "--env-file", "e.env"])
        before = parser.parse_args(["--config", "c.yaml", "--env-file", "e.env", *words, *required])
        assert (after.config, after.env_file) == (before.config, before.env_file) == ("c.yaml", "e.env"), words
        assert "--config" in sub.format_help() and "--env-file" in sub.format_help(), words
    assert parser.parse_args(["ship"]).config is None


def test_simulate_takes_its_config_after_the_command(tmp_path, capsys):
    """The issue's own example: `voicelog simulate --config my.yaml` runs with that file."""
    config = config_file(tmp_path, name="my.yaml")
    assert main(["simulate", "--config", str(config), "--sessions", "1", "--turns", "1", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["backup_dir"] == str(tmp_path / "backups")


def test_start_and_ship_help_say_what_they_do_and_ship_lists_its_exit_codes(capsys):
    """`start --help` and `ship --help` describe the command; ship's help lists every exit code."""
    commands = dict(every_command(build_parser()))
    assert "LiveKit worker" in commands["start",].description and "/readyz" in commands["start",].description
    ship_help = commands["ship",].format_help()
    assert "deliver what the spool holds" in ship_help
    for code in ("0  everything is delivered", "1  only parked", "2  configuration error", "3  another shipper",
                 "4  the Manager refuses our secret", "5  pending turns are left"):
        assert code in ship_help


def test_counts_read_as_words_with_singular_and_plural(tmp_path, capsys):
    """One session is "1 session", never "1 sessions" or "1 session(s)"."""
    config = config_file(tmp_path)
    assert main(["simulate", "--config", str(config), "--sessions", "1", "--turns", "1"]) == 0
    out = capsys.readouterr().out
    assert "simulated 1 session in" in out and "captured 1 child turn and 1 toy reply" in out
    assert main(["backups", "list", "--config", str(config)]) == 0
    assert "1 session, times in UTC" in capsys.readouterr().err
    assert main(["backups", "verify", "--config", str(config)]) == 0
    assert "checked 1 backup file and 1 session: OK, 0 warnings" in capsys.readouterr().out


def test_the_documentation_links_only_to_files_inside_the_repository():
    """README and docs link to files a clone has; the Manager contract is in docs/manager-api.md."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "systemd" / "README.md"]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+://", target):
                continue
            if not (page.parent / target).resolve().is_relative_to(REPO) or not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert not broken, "links a clone cannot follow:\n" + "\n".join(broken)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "(docs/manager-api.md)" in readme and "../shared" not in readme
    contract = (REPO / "docs" / "manager-api.md").read_text(encoding="utf-8")
    for fact in ("/agent/chat-history/report", "HTTP 200 is not success", "code 401", "data false",
                 "reportTime", "milliseconds", "Idempotency-Key"):
        assert fact in contract, fact
