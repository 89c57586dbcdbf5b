"""The audio section: off by default, bounded, and refused at start when it could crowd text out."""

from __future__ import annotations

import pytest

from tests.kits.settings import config_file
from voicelog.services.config import ConfigError, load_settings


def test_audio_is_off_unless_asked_for(tmp_path):
    settings = load_settings(config_file(tmp_path), environ={})
    assert settings.audio.enabled is False and settings.audio.replies is False
    assert (settings.audio.max_seconds, settings.audio.max_mb) == (30, 200)
    on = load_settings(config_file(tmp_path), environ={"VOICELOG__AUDIO__ENABLED": "true"})
    assert on.audio.enabled is True


@pytest.mark.parametrize(("audio", "chat_history", "problem"), [
    ({"enabled": True, "max_mb": 80}, {"spool_max_mb": 100},
     "audio.max_mb (80) must be at most half of chat_history.spool_max_mb (100)"),
    ({"max_seconds": 30, "ring_seconds": 10}, {}, "audio.ring_seconds must be at least max_seconds plus both margins"),
    ({"max_mb": 0}, {}, "audio.max_mb must be greater than 0"),
])
def test_settings_that_could_not_hold_are_refused_at_start_naming_the_key(tmp_path, audio, chat_history, problem):
    with pytest.raises(ConfigError) as refused:
        load_settings(config_file(tmp_path, audio=audio, chat_history=chat_history), environ={})
    assert any(problem in line for line in refused.value.problems), refused.value.problems
