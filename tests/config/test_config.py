"""Configuration is parsed once, validated with clear messages, and never shows secrets."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.kits import REPO
from voicelog.cli.app import main
from voicelog.services.config import (
    ApiMode,
    ConfigError,
    Durability,
    LogFormat,
    LogLevel,
    ReportTimeUnit,
    Settings,
    load_settings,
    render_config_yaml,
)


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
    text = (REPO / "config.yaml").read_text()
    settings = load_settings(None, environ={})
    for section in ("manager_api", "chat_history", "shipper", "agent", "logging", "http", "mqtt", "memory"):
        assert f"\n{section}:" in text
        for name in type(getattr(settings, section)).model_fields:
            assert f"  {name}:" in text, f"{section}.{name} is not documented"


def test_xiaozhi_dash_spelling_and_compat_env_names_are_accepted(tmp_path):
    """A manager-api block and MANAGER_API_URL/SECRET configure the Manager."""
    path = write(tmp_path, "manager-api:\n  url: http://h:8002/toy\n  timeout: 3\n")
    settings = load_settings(path, environ={"MANAGER_API_SECRET": "s3cr3t-value"})
    assert settings.manager_api.url == "http://h:8002/toy"
    assert settings.manager_api.timeout == 3.0
    assert settings.manager_api.secret.reveal() == "s3cr3t-value"


def test_environment_overrides_file_values_with_the_documented_scheme(tmp_path):
    """VOICELOG__SECTION__KEY wins over the file and is typed like YAML."""
    path = write(tmp_path, "chat_history:\n  batch_size: 5\n")
    settings = load_settings(path, environ={"VOICELOG__CHAT_HISTORY__BATCH_SIZE": "9",
                                            "VOICELOG__CHAT_HISTORY__DURABILITY": "power"})
    assert settings.chat_history.batch_size == 9
    assert settings.chat_history.durability is Durability.POWER


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


def test_config_yaml_is_rendered_from_the_declarations():
    """The committed config.yaml is exactly the text the declarations render, comments included."""
    assert (REPO / "config.yaml").read_text(encoding="utf-8") == render_config_yaml(), (
        "config.yaml is stale; regenerate it with: .venv/bin/python -c \"from voicelog.services.config "
        "import render_config_yaml as r; open('config.yaml', 'w').write(r())\"")


def test_every_declared_key_has_a_description_in_the_json_schema():
    """Each key's one declaration carries its documentation, so the schema documents every key."""
    sections = {name: model for name, model in Settings.model_json_schema()["$defs"].items()
                if "properties" in model}
    assert len(sections) == 10  # the nine sections and agent's plugin model
    for section, model in sections.items():
        for key, prop in model["properties"].items():
            assert prop.get("description"), f"{section}.{key} has no description"


def test_every_problem_is_reported_at_once_one_line_each(tmp_path):
    """A file with several mistakes fails once, listing each mistake on its own line."""
    path = write(tmp_path, "manager_api:\n  api_mode: batch\n  timeout: 0\n"
                           "chat_history:\n  batch_size: 0\n  batchsize: 3\n"
                           "shipper:\n  retry_initial: 5\n  retry_max: 1\n"
                           "mqtt:\n  enabled: yes please\n"
                           "nonsense: {}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={"VOICELOG__LOGGING__LEVEL": "LOUD"})
    assert sorted(info.value.problems) == sorted([
        "unknown section 'nonsense'; known: manager_api, chat_history, shipper, agent, logging, http, mqtt, "
        "memory, audio",
        "manager_api.timeout must be greater than 0",
        "manager_api.api_mode must be one of report, session; got 'batch'",
        "chat_history.batch_size must be greater than 0",
        "unknown key chat_history.batchsize (did you mean 'batch_size'?)",
        "shipper.retry_max must be at least shipper.retry_initial",
        "VOICELOG__LOGGING__LEVEL: must be one of DEBUG, INFO, WARNING, ERROR; got 'LOUD'",
        "mqtt.enabled must be true or false, got 'yes please'",
    ])
    assert str(info.value).splitlines() == list(info.value.problems)


def test_cli_prints_each_problem_on_its_own_line(tmp_path, capsys):
    """Every problem gets its own "configuration error" line on stderr."""
    path = write(tmp_path, "chat_history:\n  batch_size: 0\n  send_interval: -1\n")
    assert main(["--config", str(path), "simulate", "--sessions", "1", "--turns", "1"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "voicelog: configuration error: chat_history.batch_size must be greater than 0",
        "voicelog: configuration error: chat_history.send_interval must be greater than 0",
    ]


@pytest.mark.parametrize(("environ", "message"), [
    ({"VOICELOG__CHAT_HISTORY__BATCH_SIZE": "0"}, "VOICELOG__CHAT_HISTORY__BATCH_SIZE: must be greater than 0"),
    ({"VOICELOG__CHAT_HISTORY__BATCH_SIZE": "many"},
     "VOICELOG__CHAT_HISTORY__BATCH_SIZE: must be a number, got 'many'"),
    ({"VOICELOG__CHAT_HISTORY__BATCHSIZE": "3"},
     "VOICELOG__CHAT_HISTORY__BATCHSIZE: unknown key chat_history.batchsize (did you mean 'batch_size'?)"),
    ({"VOICELOG__CHAT_HISTRY__BATCH_SIZE": "3"},
     "environment variable VOICELOG__CHAT_HISTRY__BATCH_SIZE: unknown section 'chat_histry' "
     "(did you mean 'chat_history'?)"),
    ({"VOICELOG__SHIPPER": "3"}, "environment variable VOICELOG__SHIPPER: expected VOICELOG__<SECTION>__<KEY>"),
    ({"MANAGER_API_URL": "ftp://x", "MANAGER_API_SECRET": "s"}, "MANAGER_API_URL: must be an http(s) URL"),
])
def test_an_environment_value_that_is_refused_names_its_variable(environ, message):
    """A bad value from the environment is reported under the variable that set it."""
    with pytest.raises(ConfigError) as info:
        load_settings(None, environ=environ)
    assert message in str(info.value)


def test_the_environment_overrides_a_bad_file_value_and_is_blamed_only_for_its_own(tmp_path):
    """A file value the environment replaces is not reported; the environment's value is."""
    path = write(tmp_path, "chat_history:\n  batch_size: 0\n  send_interval: 0\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={"VOICELOG__CHAT_HISTORY__BATCH_SIZE": "4"})
    assert info.value.problems == ("chat_history.send_interval must be greater than 0",)


@pytest.mark.parametrize(("section", "key", "allowed"), [
    ("chat_history", "durability", "process, power"),
    ("manager_api", "api_mode", "report, session"),
    ("manager_api", "report_time_unit", "ms, s"),
    ("logging", "level", "DEBUG, INFO, WARNING, ERROR"),
    ("logging", "format", "auto, json, console"),
])
def test_a_choice_refuses_a_bad_value_listing_the_allowed_ones(tmp_path, section, key, allowed):
    """Every choice is an enum: a value outside it is refused with the whole list of choices."""
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, f"{section}:\n  {key}: Power\n"), environ={})
    assert str(info.value) == f"{section}.{key} must be one of {allowed}; got 'Power'"


def test_choices_are_parsed_into_enum_members(tmp_path):
    """Code compares choices as enum members, and a member equals its spelling in the file."""
    path = write(tmp_path, "manager_api:\n  api_mode: session\n  report_time_unit: s\n"
                           "logging:\n  level: DEBUG\n  format: json\n")
    settings = load_settings(path, environ={})
    assert settings.manager_api.api_mode is ApiMode.SESSION
    assert settings.manager_api.report_time_unit is ReportTimeUnit.S
    assert settings.logging.level is LogLevel.DEBUG and settings.logging.format is LogFormat.JSON
    assert settings.chat_history.durability is Durability.PROCESS == "process"


def test_a_secret_never_appears_in_repr_or_in_an_error_message(tmp_path):
    """Secrets are masked in repr, str and dumps, and no error repeats one, nor chains one that does."""
    environ = {"MANAGER_API_URL": "http://h:1/x", "MANAGER_API_SECRET": "TOPSECRET1",
               "VOICELOG__MQTT__PASSWORD": "TOPSECRET2", "VOICELOG__MQTT__COMMAND_KEY": "TOPSECRET3"}
    settings = load_settings(None, environ=environ)
    shown = repr(settings) + str(settings) + settings.model_dump_json() + repr(settings.model_dump())
    assert "TOPSECRET" not in shown
    assert settings.mqtt.password.reveal() == "TOPSECRET2"
    path = write(tmp_path, "manager_api:\n  secret: [TOPSECRET4]\n  timeout: 0\n"
                           "mqtt:\n  command_key: {k: TOPSECRET5}\n  port: 0\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={"VOICELOG__MQTT__PASSWORD": "TOPSECRET2"})
    assert "manager_api.secret must be a string" in info.value.problems
    assert "mqtt.command_key must be a string" in info.value.problems
    assert "TOPSECRET" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_secret_values_from_the_environment_are_taken_as_written():
    """A secret, URL or user name that looks like a YAML number or flag stays the string it was."""
    settings = load_settings(None, environ={"MANAGER_API_URL": "http://h:1/x", "MANAGER_API_SECRET": "01234567",
                                            "VOICELOG__MQTT__USERNAME": "yes", "VOICELOG__MQTT__PORT": "8883"})
    assert settings.manager_api.secret.reveal() == "01234567"
    assert settings.mqtt.username == "yes"
    assert settings.mqtt.port == 8883


def test_a_copy_with_changes_keeps_the_other_settings():
    """model_copy(update=...) is how callers derive settings; the original stays as it was."""
    settings = load_settings(None, environ={})
    quiet = settings.logging.model_copy(update={"level": LogLevel.WARNING})
    assert quiet.level is LogLevel.WARNING and quiet.format is settings.logging.format
    assert settings.logging.level is LogLevel.INFO
    with pytest.raises(ValidationError):
        settings.logging.level = LogLevel.DEBUG  # frozen
