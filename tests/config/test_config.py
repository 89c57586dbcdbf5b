"""Configuration is parsed once, validated with clear messages, and never shows secrets."""

from pathlib import Path

import pytest

from tests.kits import REPO
from voicelog.cli.app import main
from voicelog.services.config import ConfigError, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_config_file_equals_the_embedded_defaults():
    """The documented config.yaml holds exactly the defaults, so the file and code agree."""
    from_file = load_settings(REPO / "config.yaml", environ={})
    defaults = load_settings(None, environ={})
    assert from_file.manager_api == defaults.manager_api
    assert from_file.chat_history == defaults.chat_history
    assert from_file.shipper == defaults.shipper
    assert from_file.agent == defaults.agent
    assert from_file.mqtt == defaults.mqtt
    assert from_file.http == defaults.http
    assert from_file.memory == defaults.memory


def test_every_key_of_the_settings_is_documented_in_config_yaml():
    """Each settings field appears in config.yaml with a comment above it or its section."""
    import dataclasses

    text = (REPO / "config.yaml").read_text()
    settings = load_settings(None, environ={})
    for section in ("manager_api", "chat_history", "shipper", "agent", "logging", "http", "mqtt", "memory"):
        assert f"\n{section}:" in text
        for field in dataclasses.fields(getattr(settings, section)):
            assert f"  {field.name}:" in text, f"{section}.{field.name} is not documented"


def test_xiaozhi_dash_spelling_and_compat_env_names_are_accepted(tmp_path):
    """A manager-api block and MANAGER_API_URL/SECRET configure the Manager."""
    path = write(tmp_path, "manager-api:\n  url: http://h:8002/toy\n  timeout: 3\n")
    settings = load_settings(path, environ={"MANAGER_API_SECRET": "s3cr3t"})
    assert settings.manager_api.url == "http://h:8002/toy"
    assert settings.manager_api.timeout == 3.0
    assert settings.manager_api.secret.reveal() == "s3cr3t"


def test_environment_overrides_file_values_with_the_documented_scheme(tmp_path):
    """VOICELOG__SECTION__KEY wins over the file and is typed like YAML."""
    path = write(tmp_path, "chat_history:\n  batch_size: 5\n")
    settings = load_settings(path, environ={"VOICELOG__CHAT_HISTORY__BATCH_SIZE": "9",
                                            "VOICELOG__CHAT_HISTORY__DURABILITY": "power"})
    assert settings.chat_history.batch_size == 9
    assert settings.chat_history.durability == "power"


def test_voicelog_config_variable_selects_the_file(tmp_path):
    """VOICELOG_CONFIG names the file when --config is not given."""
    path = write(tmp_path, "chat_history:\n  send_interval: 2.5\n")
    assert load_settings(None, environ={"VOICELOG_CONFIG": str(path)}).chat_history.send_interval == 2.5


@pytest.mark.parametrize(("text", "message"), [
    ("manager_api:\n  api_mode: batch\n", "manager_api.api_mode must be one of report, session"),
    ("manager_api:\n  report_time_unit: us\n", "manager_api.report_time_unit must be one of ms, s"),
    ("chat_history:\n  batch_size: 0\n", "chat_history.batch_size must be greater than 0"),
    ("chat_history:\n  batch_size: 2.5\n", "chat_history.batch_size must be a whole number"),
    ("chat_history:\n  send_interval: soon\n", "chat_history.send_interval must be a number"),
    ("chat_history:\n  batchsize: 3\n", "unknown key chat_history.batchsize (did you mean 'batch_size'?)"),
    ("chat_history:\n  opt_out_macs: [zz]\n", "chat_history.opt_out_macs 'zz' is not a MAC address"),
    ("manager_api:\n  url: ftp://x\n", "manager_api.url must be an http(s) URL"),
    ("manager_api:\n  url: http://x:1/xiaozhi\n", "manager_api.secret is required"),
    ("nonsense: {}\n", "unknown section 'nonsense'"),
    ("- a\n- b\n", "must hold a mapping of sections"),
    ("manager_api: [\n", "is not valid YAML"),
    ("memory:\n  backend: memcached\n", "memory.backend must be one of local, redis"),
    ("memory:\n  redis_url: http://h:6379\n", "memory.redis_url must be a redis://"),
    ("memory:\n  push_interval: 2\n", "memory.push_interval must be at most 0.5"),
    ("memory:\n  key_prefix: 'a b*'\n", "memory.key_prefix must be a non-empty name"),
    ("memory:\n  max_turns: 0\n", "memory.max_turns must be greater than 0"),
])
def test_bad_values_fail_naming_the_key_and_what_is_allowed(tmp_path, text, message):
    """Each bad value is refused at start with the key and the allowed values."""
    with pytest.raises(ConfigError, match=None) as info:
        load_settings(write(tmp_path, text), environ={})
    assert message in str(info.value)


def test_cli_reports_bad_config_with_exit_code_2_and_no_secret(tmp_path, capsys):
    """The CLI prints the config error, exits 2, and never echoes the secret."""
    path = write(tmp_path, "manager_api:\n  url: http://x:1/xiaozhi\n  secret: TOPSECRET\n"
                           "  api_mode: nope\n")
    assert main(["--config", str(path), "simulate", "--sessions", "1", "--turns", "1"]) == 2
    captured = capsys.readouterr()
    assert "manager_api.api_mode must be one of report, session" in captured.err
    assert "TOPSECRET" not in captured.err + captured.out


def test_secret_never_appears_in_the_settings_repr():
    """Printing settings (e.g. in a traceback) shows a mask, not the secret."""
    settings = load_settings(None, environ={"MANAGER_API_URL": "http://h:1/x", "MANAGER_API_SECRET": "abc123xyz"})
    assert "abc123xyz" not in repr(settings)
    assert "***" in repr(settings.manager_api.secret)
