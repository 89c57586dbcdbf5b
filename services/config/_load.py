"""Read voicelog's configuration once into frozen, typed settings.

Sources, later ones winning: the declared defaults, the YAML file, environment variables.
Environment scheme: ``VOICELOG__<SECTION>__<KEY>`` (e.g. ``VOICELOG__MANAGER_API__SECRET``),
values read as YAML scalars (secrets, URLs and user names as written); plus the
xiaozhi-compatible ``MANAGER_API_URL`` and ``MANAGER_API_SECRET``. Every problem is reported at
once, one line each, naming the key or the variable and what is allowed.

A relative path (``backup_dir``, ``spool_path``, key and CA files) is resolved against the folder
of the config file, or the current folder when there is none, so the settings hold absolute
paths and a command finds the same data wherever it is run from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from voicelog.services.config._model import SECTIONS, Settings
from voicelog.services.config._problems import problem_lines, suggest
from voicelog.services.config._types import ConfigError, is_file_path, is_verbatim

ENV_PREFIX = "VOICELOG__"
CONFIG_ENV = "VOICELOG_CONFIG"
COMPAT_ENV = {"MANAGER_API_URL": ("manager_api", "url"), "MANAGER_API_SECRET": ("manager_api", "secret")}
# xiaozhi configs spell the block with a dash; accept it as the same section.
SECTION_ALIASES = {"manager-api": "manager_api", "chat-history": "chat_history"}


def load_settings(path: str | os.PathLike[str] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Read the file (or ``$VOICELOG_CONFIG``, or embedded defaults) and the environment."""
    environ = os.environ if environ is None else environ
    chosen = path or environ.get(CONFIG_ENV)
    problems: list[str] = []
    raw = _canonical_sections(_read_yaml(Path(chosen)) if chosen else {}, problems)
    origins = _apply_environment(raw, environ, problems)
    base = Path(chosen).resolve().parent if chosen else Path.cwd()
    _resolve_paths(raw, base)
    settings = None
    try:
        source = str(Path(chosen).resolve()) if chosen else "<defaults>"
        settings = Settings.model_validate({**raw, "source": source})
    except ValidationError as error:
        problems.extend(problem_lines(error, origins))
    # Raised outside the except block: pydantic's own error, which shows inputs, is never chained.
    if problems or settings is None:
        raise ConfigError(*problems)
    return settings


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    return data


def _canonical_sections(raw: dict[str, Any], problems: list[str]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    for name, body in raw.items():
        section = SECTION_ALIASES.get(name, name)
        if section not in SECTIONS:
            problems.append(f"unknown section {name!r}{suggest(str(name), SECTIONS)}")
        elif body is not None and not isinstance(body, dict):
            problems.append(f"section {name!r} must be a mapping of keys")
        else:
            result.setdefault(section, {}).update(body or {})
    return result


def _apply_environment(raw: dict[str, dict[str, Any]], environ: Mapping[str, str],
                       problems: list[str]) -> dict[tuple[str, str], str]:
    """Put the environment's values into ``raw``; return which variable set which key."""
    origins: dict[tuple[str, str], str] = {}
    for name, (section, key) in COMPAT_ENV.items():
        if name in environ:
            raw.setdefault(section, {})[key] = environ[name]
            origins[section, key] = name
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX):].lower().split("__")
        if len(parts) != 2:
            problems.append(f"environment variable {name}: expected {ENV_PREFIX}<SECTION>__<KEY>")
            continue
        section, key = parts
        if section not in SECTIONS:
            problems.append(f"environment variable {name}: unknown section {section!r}"
                            f"{suggest(section, SECTIONS)}")
            continue
        raw.setdefault(section, {})[key] = _env_scalar(section, key, value)
        origins[section, key] = name
    return origins


def _env_scalar(section: str, key: str, value: str) -> Any:
    # Secrets, URLs and user names stay strings as written; everything else reads like YAML.
    field = SECTIONS[section].model_fields.get(key)
    if field is not None and is_verbatim(field.annotation, field.metadata):
        return value
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def _resolve_paths(raw: dict[str, dict[str, Any]], base: Path) -> None:
    """Make every relative path setting (given or default) absolute, relative to ``base``."""
    for section, model in SECTIONS.items():
        for key, field in model.model_fields.items():
            if not is_file_path(field.metadata):
                continue
            value = raw.get(section, {}).get(key, field.get_default(call_default_factory=True))
            if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
                raw.setdefault(section, {})[key] = str(base / value)
            elif isinstance(value, str) and value.startswith("~"):
                raw.setdefault(section, {})[key] = str(Path(value).expanduser())
