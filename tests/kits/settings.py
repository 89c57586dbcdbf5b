"""The one settings builder for tests: a real config file under tmp_path, loaded as production does.

Presets (a Manager to deliver to, a daemon, a shipper process) only choose sections; the file is
always written by ``config_file`` and read by the same ``load_settings`` that ``voicelog`` uses.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from voicelog.services.config import Settings, load_settings


class _Dumper(yaml.SafeDumper):
    """Writes choices given as enum members (``ApiMode.SESSION``) as their spelling."""


_Dumper.add_multi_representer(Enum, lambda dumper, member: dumper.represent_data(member.value))

FAST_SHIPPER = {"retry_initial": 0.02, "retry_max": 0.2, "poll_interval": 0.05,
                "parked_retry_interval": 0.2, "auth_retry_interval": 0.1, "drain_timeout": 5}


def config_file(tmp_path: Path, *, name: str = "voicelog-test.yaml", manager: Any = None,
                preset: dict[str, dict[str, Any]] | None = None, **sections: dict[str, Any]) -> Path:
    """Write a config file: backups under ``tmp_path``, quiet logs, the Manager when given.

    Then a preset's sections, then the caller's, each key by key over what came before.
    """
    raw: dict[str, dict[str, Any]] = {"chat_history": {"backup_dir": str(tmp_path / "backups")},
                                      "logging": {"level": "WARNING"}}
    if manager is not None:
        raw["manager_api"] = {"url": manager.url, "secret": manager.secret, "timeout": 2,
                              "report_time_unit": manager.report_time_unit}
    for layer in (preset or {}, sections):
        for section, values in layer.items():
            raw.setdefault(section, {}).update(values)
    path = tmp_path / name
    path.write_text(yaml.dump(raw, Dumper=_Dumper, allow_unicode=True), encoding="utf-8")
    return path


def make_settings(tmp_path: Path, *, manager: Any = None, preset: dict[str, dict[str, Any]] | None = None,
                  **sections: dict[str, Any]) -> Settings:
    """Settings read from a fresh ``config_file`` (see there), with no environment overrides."""
    return load_settings(config_file(tmp_path, manager=manager, preset=preset, **sections), environ={})


def delivery_settings(tmp_path: Path, manager: Any, **sections: dict[str, Any]) -> Settings:
    """Settings delivering to the reference Manager with fast retry timings."""
    return make_settings(tmp_path, manager=manager, preset={"shipper": FAST_SHIPPER}, **sections)
