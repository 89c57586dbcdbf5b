"""The built-in agent's models, from ``agent.stt``, ``agent.llm`` and ``agent.tts``.

Each setting is one of:
- a LiveKit inference descriptor ``"provider/model"``: handed to ``AgentSession`` as it is
  (LiveKit Cloud inference; credentials are the worker's LIVEKIT_* variables);
- ``"scripted"``: voicelog's scripted STT, toy LLM and silent TTS, needing no credentials at all
  (what ``simulate`` and ``talk`` use on a fresh machine and in tests);
- a plugin: ``{plugin: openai, model: ..., base_url: ..., api_key_env: ..., options: {...}}``
  builds ``livekit.plugins.openai.LLM(model=..., base_url=..., api_key=$ENV, **options)``.

Plugin modules register themselves with livekit on import, which livekit allows on the main
thread only: ``import_plugins`` runs in the main process before any job (``start``, ``talk``).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from voicelog.services.config import AgentSettings, PluginModel

SCRIPTED = "scripted"
# Scripted speech and audio run this much faster than real time (talk stays snappy).
SCRIPTED_TIME_SCALE = 0.05
KINDS = ("stt", "llm", "tts")


class ModelSetupError(RuntimeError):
    """A configured model cannot be built; the message names the setting and the cause."""


def import_plugins(agent: AgentSettings) -> None:
    """Import every configured plugin module now (main thread), or say which one is missing."""
    for kind in KINDS:
        choice = getattr(agent, kind)
        if isinstance(choice, PluginModel):
            _plugin_class(kind, choice)
            _api_key(kind, choice)


def session_models(agent: AgentSettings) -> dict[str, Any]:
    """``stt``/``llm``/``tts`` for an AgentSession, built afresh for one session."""
    return {kind: build_model(kind, getattr(agent, kind)) for kind in KINDS}


def build_model(kind: str, choice: str | PluginModel) -> Any:
    """One model from its setting (see the module docstring)."""
    if isinstance(choice, PluginModel):
        options: dict[str, Any] = dict(choice.options)
        options.update({key: value for key, value in (("model", choice.model), ("base_url", choice.base_url))
                        if value})
        if choice.api_key_env:
            options["api_key"] = _api_key(kind, choice)
        try:
            return _plugin_class(kind, choice)(**options)
        except (TypeError, ValueError) as exc:
            raise ModelSetupError(f"agent.{kind}: livekit.plugins.{choice.plugin}.{kind.upper()} "
                                  f"refused the options {sorted(options)}: {exc}") from exc
    if choice == SCRIPTED:
        return _scripted(kind)
    return choice  # a LiveKit inference descriptor, resolved by AgentSession itself


def _scripted(kind: str) -> Any:
    from voicelog.agent.simulation.scripted import ScriptedSTT, ScriptedTTS
    from voicelog.agent.simulation.scripted.toy import ToyLLM

    if kind == "stt":
        return ScriptedSTT(time_scale=SCRIPTED_TIME_SCALE)
    if kind == "tts":
        return ScriptedTTS(time_scale=SCRIPTED_TIME_SCALE)
    return ToyLLM()


def scripted_session_options(stt: Any) -> dict[str, Any]:
    """AgentSession options a scripted STT needs (no VAD model, STT turn detection), else none."""
    from voicelog.agent.simulation.scripted import ScriptedSTT, session_kwargs

    return session_kwargs(SCRIPTED_TIME_SCALE) if isinstance(stt, ScriptedSTT) else {}


def _plugin_class(kind: str, choice: PluginModel) -> Any:
    module_name = f"livekit.plugins.{choice.plugin}"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelSetupError(
            f"agent.{kind}: plugin {choice.plugin!r} is not installed ({exc}); install it with "
            f"pip install livekit-plugins-{choice.plugin.replace('_', '-')}") from exc
    model_class = getattr(module, kind.upper(), None)
    if model_class is None:
        raise ModelSetupError(f"agent.{kind}: {module_name} has no {kind.upper()} class")
    return model_class


def _api_key(kind: str, choice: PluginModel) -> str:
    if not choice.api_key_env:
        return ""
    key = os.environ.get(choice.api_key_env, "")
    if not key:
        raise ModelSetupError(f"agent.{kind}: the API key variable {choice.api_key_env} is not set "
                              "(or empty) in the environment")
    return key
