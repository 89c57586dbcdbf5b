"""The documented ``config.yaml``, written from the declarations rather than by hand.

Each section is headed by its model's docstring; each key carries its ``description`` as the comment
above it and its default as the value. ``tests/test_config.py`` checks that the committed file is
exactly this text, so the file cannot drift from the code.
"""

from __future__ import annotations

import json
import re
from enum import Enum
from typing import Any

import yaml

from voicelog.services.config._model import SECTIONS
from voicelog.services.config._types import Secret

HEADER = """\
# voicelog configuration. Every key is optional; the values shown are the built-in defaults.
# Select this file with --config PATH or VOICELOG_CONFIG=PATH.
# Override any key from the environment: VOICELOG__<SECTION>__<KEY>, e.g.
#   VOICELOG__CHAT_HISTORY__BATCH_SIZE=10   VOICELOG__MANAGER_API__SECRET=...
# The xiaozhi names MANAGER_API_URL and MANAGER_API_SECRET work too. A "manager-api:" block
# is read as "manager_api:". A bad value stops voicelog at start, naming the key.
# This file is generated from services/config/_model.py (render_config_yaml); edit it there.
"""

_PLAIN = re.compile(r"[A-Za-z0-9_./:@+-]+")


def render_config_yaml() -> str:
    """The text of ``config.yaml``: the header, then every section and key with its documentation."""
    lines = HEADER.splitlines()
    for name, model in SECTIONS.items():
        lines += ["", *[f"# {line}" for line in (model.__doc__ or "").strip().splitlines()[:1]], f"{name}:"]
        for key, field in model.model_fields.items():
            lines += [f"  # {line}" for line in (field.description or "").splitlines()]
            lines.append(f"  {key}: {_scalar(field.get_default(call_default_factory=True))}")
    return "\n".join(lines) + "\n"


def _scalar(value: Any) -> str:
    """A default as YAML that reads back to the same value, quoted only when it must be."""
    if isinstance(value, Secret):
        return '""'  # a default secret is empty, and a real one is never written out
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return _scalar(value.value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_scalar(item) for item in value) + "]"
    text = str(value)
    if _PLAIN.fullmatch(text) and yaml.safe_load(text) == text:
        return text
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a double-quoted YAML scalar
