"""Read a systemd ``EnvironmentFile`` the way systemd does, so every command can use the unit's.

The rules (systemd.exec(5), "EnvironmentFile="): one ``KEY=VALUE`` per line; blank lines and
lines whose first non-blank character is ``#`` or ``;`` are ignored; whitespace around the key
and the value is dropped; a value may be quoted, ``'single'`` (taken as written) or
``"double"`` (where ``\\"``, ``\\\\``, ``\\$`` and ``\\``` are escapes), and a quoted value may span
lines; outside quotes a backslash takes the next character as written, and one at the end of a
line continues the value on the next. ``#`` after a value is part of the value, as in systemd.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from voicelog.services.config._types import ConfigError

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOUBLE_QUOTE_ESCAPES = '"\\$`'
STDIN = "-"


def read_environment_file(path: str) -> dict[str, str]:
    """The assignments of an environment file (``-``: standard input); ConfigError naming the line."""
    try:
        text = sys.stdin.read() if path == STDIN else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read environment file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"environment file {path} is not UTF-8 text") from None
    return parse_environment(text, where="standard input" if path == STDIN else path)


def parse_environment(text: str, *, where: str = "environment file") -> dict[str, str]:
    """Parse the text of an environment file; every bad line is reported at once."""
    values: dict[str, str] = {}
    problems: list[str] = []
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        start = number
        line = lines[number].strip()
        number += 1
        if not line or line[0] in "#;":
            continue
        key, sep, rest = line.partition("=")
        key = key.strip()
        if not sep or not _KEY.fullmatch(key):
            # The line itself is not shown: it may be a pasted secret.
            problems.append(f"{where}, line {start + 1}: expected KEY=VALUE with KEY a variable name")
            continue
        try:
            values[key], number = _value(rest.lstrip(), lines, number)
        except ValueError as exc:
            problems.append(f"{where}, line {start + 1} ({key}): {exc}")
            number = len(lines)
    if problems:
        raise ConfigError(*problems)
    return values


def _value(rest: str, lines: list[str], number: int) -> tuple[str, int]:
    """The value starting at ``rest``, reading on into later lines; and the next line to read."""
    out: list[str] = []
    unquoted_end = 0  # trailing blanks after this index are dropped (they were not quoted)
    i, quote = 0, ""
    while True:
        if i >= len(rest):
            if quote:  # a quoted value goes on over the line break
                if number >= len(lines):
                    raise ValueError(f"the {quote} quote is never closed")
                out.append("\n")
                rest, i, number = lines[number], 0, number + 1
                continue
            break
        char = rest[i]
        i += 1
        if quote == "'":
            if char == "'":
                quote = ""
            else:
                out.append(char)
        elif quote == '"':
            if char == '"':
                quote = ""
            elif char == "\\" and i < len(rest) and rest[i] in _DOUBLE_QUOTE_ESCAPES:
                out.append(rest[i])
                i += 1
            else:
                out.append(char)
        elif char in "'\"":
            quote = char
        elif char == "\\":
            if i >= len(rest):  # a line continuation
                if number >= len(lines):
                    break
                rest, i, number = lines[number].lstrip(), 0, number + 1
                continue
            out.append(rest[i])
            i += 1
        else:
            out.append(char)
            if not char.isspace():
                unquoted_end = len(out)
            continue
        unquoted_end = len(out)
    return "".join(out[:unquoted_end]), number

