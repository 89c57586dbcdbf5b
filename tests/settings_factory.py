"""Build real Settings for tests through the same loader production uses."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from voicelog.services.config import Settings, load_settings


class _Dumper(yaml.SafeDumper):
    """Writes choices given as enum members (``ApiMode.SESSION``) as their spelling."""


_Dumper.add_multi_representer(Enum, lambda dumper, member: dumper.represent_data(member.value))


def make_settings(tmp_path: Path, **sections: dict[str, Any]) -> Settings:
    """Settings with backups and spool under ``tmp_path``, plus per-section overrides."""
    raw: dict[str, dict[str, Any]] = {"chat_history": {"backup_dir": str(tmp_path / "backups")},
                                      "logging": {"level": "WARNING"}}
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    path = tmp_path / "voicelog-test.yaml"
    path.write_text(yaml.dump(raw, Dumper=_Dumper, allow_unicode=True), encoding="utf-8")
    return load_settings(path, environ={})
