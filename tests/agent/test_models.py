"""The built-in agent's models from config, and the example factory the README runs."""

from __future__ import annotations

import io
import textwrap
import uuid

from tests.kits import REPO
from tests.kits.agents import MAC, SCRIPTED
from tests.kits.settings import make_settings
from voicelog.agent.talk import talk

FAKE_PLUGIN = '''
from voicelog.agent.simulation.scripted.toy import ToyLLM

MADE = []


class LLM(ToyLLM):
    """Stands in for an OpenAI-compatible plugin LLM: notes how voicelog built it."""

    def __init__(self, *, model, base_url, api_key, temperature=1.0):
        super().__init__()
        MADE.append({"model": model, "base_url": base_url, "api_key": api_key, "temperature": temperature})
'''


async def test_a_plugin_llm_is_built_with_its_options_and_the_key_from_the_environment(tmp_path, monkeypatch):
    """agent.llm {plugin, model, base_url, api_key_env, options} builds livekit.plugins.<plugin>.LLM so."""
    import importlib
    import sys

    name = f"fakeai_{uuid.uuid4().hex[:6]}"
    package = tmp_path / "site" / "livekit" / "plugins" / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(FAKE_PLUGIN), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("FAKEAI_TEST_KEY", "sk-test")
    llm = {"plugin": name, "model": "qwen2.5", "base_url": "http://127.0.0.1:9/v1",
           "api_key_env": "FAKEAI_TEST_KEY", "options": {"temperature": 0.2}}
    settings = make_settings(tmp_path, agent={**SCRIPTED, "llm": llm})
    out = io.StringIO()
    assert await talk(settings, MAC, "plugin_6825ddba3978", source=["hello"], out=out, err=io.StringIO()) == 0
    assert out.getvalue() == "toy> You said: hello. Tell me more!\n"
    plugin = importlib.import_module(f"livekit.plugins.{name}")
    assert plugin.MADE == [{"model": "qwen2.5", "base_url": "http://127.0.0.1:9/v1", "api_key": "sk-test",
                            "temperature": 0.2}]
    assert f"livekit.plugins.{name}" in sys.modules


async def test_a_missing_plugin_or_key_is_named_before_any_session(tmp_path, monkeypatch):
    """A plugin that is not installed, or an unset key variable, stops talk with exit 2 and says what to do."""
    monkeypatch.delenv("NOT_SET_KEY_XYZ", raising=False)
    missing = make_settings(tmp_path, agent={**SCRIPTED, "tts": {"plugin": "nosuchplugin"}})
    err = io.StringIO()
    assert await talk(missing, MAC, source=["hello"], out=io.StringIO(), err=err) == 2
    assert "agent.tts: plugin 'nosuchplugin' is not installed" in err.getvalue()
    assert "pip install livekit-plugins-nosuchplugin" in err.getvalue()
    no_key = make_settings(tmp_path, agent={**SCRIPTED, "llm": {"plugin": "nosuchplugin", "api_key_env": "X"}})
    err = io.StringIO()
    assert await talk(no_key, MAC, source=["hello"], out=io.StringIO(), err=err) == 2
    assert "agent.llm: plugin 'nosuchplugin'" in err.getvalue()
    assert not list((tmp_path / "backups").glob("*/*.json"))


async def test_the_readme_example_factory_runs_with_its_tool_and_no_credentials(tmp_path, monkeypatch):
    """examples/toy_agent.py, named as examples.toy_agent:make_agent from the checkout, rolls its dice."""
    monkeypatch.chdir(REPO)
    settings = make_settings(tmp_path, agent={**SCRIPTED, "factory": "examples.toy_agent:make_agent"})
    out = io.StringIO()
    code = await talk(settings, MAC, "example_6825ddba3978", source=["roll the dice", "my name is Mia"],
                      out=out, err=io.StringIO())
    assert code == 0
    rolled, greeted = out.getvalue().splitlines()
    assert rolled.startswith("toy> Here you go: ") and 1 <= int(rolled.rsplit(" ", 1)[1]) <= 6
    assert greeted == "toy> Nice to meet you, Mia!"
