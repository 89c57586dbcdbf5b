"""How pydantic's findings become ``ConfigError`` lines: one per problem, in voicelog's words.

A line names the key (``chat_history.batch_size must be greater than 0``) or, when the value came
from the environment, the variable (``VOICELOG__CHAT_HISTORY__BATCH_SIZE: must be greater than 0``).
Only the kinds that cannot hold a secret (numbers, flags, choices) repeat the value they refused.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from voicelog.services.config._model import SECTIONS

# Where a key's value came from, when not the file: (section, key) -> environment variable.
Origins = Mapping[tuple[str, str], str]


def suggest(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for a near miss, else the list of known names."""
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(known)}"


def problem_lines(error: ValidationError, origins: Origins) -> list[str]:
    """One line per problem pydantic found, in declaration order."""
    return [_line(item, origins) for item in error.errors(include_url=False)]


def _line(item: ErrorDetails, origins: Origins) -> str:
    loc = item["loc"]
    if len(loc) < 2:  # a section's own cross-check, whose message names its keys
        return _message(item, ())
    section, key = str(loc[0]), str(loc[1])
    variable = origins.get((section, key))
    if item["type"] == "extra_forbidden":
        text = f"unknown key {section}.{key}{suggest(key, SECTIONS[section].model_fields)}"
        return f"{variable}: {text}" if variable else text
    message = _message(item, _choices(section, key))
    return f"{variable}: {message}" if variable else f"{section}.{key} {message}"


def _message(item: ErrorDetails, choices: tuple[str, ...]) -> str:
    kind, ctx, value = item["type"], item.get("ctx", {}), item.get("input")
    if kind == "value_error":
        return str(ctx["error"])
    if kind == "greater_than":
        return f"must be greater than {_plain(ctx['gt'])}"
    if kind == "greater_than_equal":
        return f"must be {_plain(ctx['ge'])} or more"
    if kind == "less_than_equal":
        return f"must be at most {_plain(ctx['le'])}"
    if kind == "int_from_float":
        return f"must be a whole number, got {value!r}"
    if kind == "bool_type":
        return f"must be true or false, got {value!r}"
    if kind == "enum" and choices:
        return f"must be one of {', '.join(choices)}; got {value!r}"
    text = item["msg"]  # pydantic's own words never carry the input
    return f"is not allowed: {text[:1].lower()}{text[1:]}"


def _plain(limit: float) -> str:
    return str(int(limit)) if float(limit).is_integer() else str(limit)  # "0", not "0.0"


def _choices(section: str, key: str) -> tuple[str, ...]:
    field = SECTIONS[section].model_fields.get(key)
    kind: Any = field.annotation if field else None
    return tuple(member.value for member in kind) if isinstance(kind, type) and issubclass(kind, Enum) else ()
