"""Your own agent inside voicelog: the factory contract, and the built-in agent when there is none.

``agent.factory: "package.module:function"`` names a function voicelog imports once per job
process and calls for every device session with a ``FactoryContext``. It returns either a livekit
``Agent`` (its instructions and tools; the session's models then come from config), or
``AgentParts(agent, stt=, llm=, tts=, vad=)`` (its own models), or ``AgentParts(agent,
session=AgentSession(...))`` (a ready, not started session). It may be ``async``. voicelog stays
the host: it identifies the device, preloads its memory, attaches capture, starts the session and
flushes it at shutdown. docs/own-agent.md states the whole contract.

A factory that cannot be imported fails ``start`` at once (exit 2); one that raises or returns
the wrong thing fails that one session with a ``FactoryError`` naming the factory and the cause.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from livekit.agents import Agent, AgentSession, llm

from voicelog.agent.models import ModelSetupError, scripted_session_options, session_models
from voicelog.services.config import Settings
from voicelog.services.domain import DeviceIdentity

BUILT_IN = "<built-in agent>"


class FactoryError(RuntimeError):
    """The agent factory cannot be used: the message names the factory and says why."""


@dataclass(frozen=True)
class FactoryContext:
    """What voicelog hands an agent factory for one device session."""

    identity: DeviceIdentity  # mac (lowercase colon form, or "unknown"), session_id (the room name)
    settings: Settings  # all of voicelog's settings, parsed once
    memory: llm.ChatContext  # the device's remembered turns, oldest first (empty: none)
    remembered_turns: int  # how many turns ``memory`` holds
    attributes: Mapping[str, str] = field(default_factory=dict)  # the device participant's
    job: Any = None  # livekit's JobContext (room, proc.userdata); do not connect or shut it down

    @property
    def mac(self) -> str:
        """The device's MAC, lowercase colon form ("unknown" when none was valid)."""
        return self.identity.mac

    @property
    def session_id(self) -> str:
        """The session id (the LiveKit room name), as the Manager will know it."""
        return self.identity.session_id


@dataclass
class AgentParts:
    """An agent and, optionally, the models (or the whole session) to serve it with."""

    agent: Agent
    stt: Any = None  # None: from config (agent.stt)
    llm: Any = None
    tts: Any = None
    vad: Any = None
    session: AgentSession | None = None  # a ready, NOT started session; then give no models


AgentFactory = Callable[[FactoryContext], Any]


def load_factory(spec: str) -> AgentFactory:
    """Import ``"package.module:function"`` and return the function; FactoryError says why not."""
    module_name, _, attribute = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # like gunicorn: a module beside where voicelog runs is found
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the factory's, told as such
        raise FactoryError(f"agent factory {spec!r}: cannot import module {module_name!r}: "
                           f"{type(exc).__name__}: {exc}") from exc
    for name in attribute.split("."):
        if not hasattr(target, name):
            raise FactoryError(f"agent factory {spec!r}: module {module_name!r} has no {attribute!r}")
        target = getattr(target, name)
    if not callable(target):
        raise FactoryError(f"agent factory {spec!r}: {attribute!r} is a {type(target).__name__}, "
                           "not a function")
    return target


async def agent_parts(factory: AgentFactory | None, spec: str, context: FactoryContext) -> AgentParts:
    """Call the factory (or build the built-in agent) and check what it gave back."""
    if factory is None:
        return AgentParts(Agent(instructions=context.settings.agent.instructions))
    try:
        made = factory(context)
        if inspect.isawaitable(made):
            made = await made
    except Exception as exc:  # noqa: BLE001 - a broken factory fails its session, said plainly
        raise FactoryError(f"agent factory {spec!r} raised {type(exc).__name__}: {exc}") from exc
    return _checked(made, spec)


def _checked(made: Any, spec: str) -> AgentParts:
    if isinstance(made, Agent):
        return AgentParts(made)
    if not isinstance(made, AgentParts):
        raise FactoryError(f"agent factory {spec!r} returned {_kind(made)}; it must return a livekit "
                           "Agent or voicelog AgentParts(agent, ...)")
    if not isinstance(made.agent, Agent):
        raise FactoryError(f"agent factory {spec!r} returned AgentParts whose agent is {_kind(made.agent)}, "
                           "not a livekit Agent")
    if made.session is not None and not isinstance(made.session, AgentSession):
        raise FactoryError(f"agent factory {spec!r}: AgentParts.session is {_kind(made.session)}, "
                           "not a livekit AgentSession")
    if made.session is not None and any(p is not None for p in (made.stt, made.llm, made.tts, made.vad)):
        raise FactoryError(f"agent factory {spec!r}: give AgentParts either a session or its models, "
                           "not both")
    return made


def _kind(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"


def session_for(parts: AgentParts, settings: Settings) -> AgentSession:
    """The factory's own session, or one with its models (the rest from config)."""
    if parts.session is not None:
        return parts.session
    try:
        configured = session_models(settings.agent)
    except ModelSetupError as exc:
        raise FactoryError(str(exc)) from exc
    stt = parts.stt if parts.stt is not None else configured["stt"]
    options = scripted_session_options(stt) if parts.vad is None else {"vad": parts.vad}
    return AgentSession(stt=stt, llm=parts.llm if parts.llm is not None else configured["llm"],
                        tts=parts.tts if parts.tts is not None else configured["tts"], **options)


async def with_memory(agent: Agent, memory: llm.ChatContext) -> bool:
    """Put the remembered turns ahead of the agent's own context unless the factory already did.

    Returns whether it added them. A factory that passed ``chat_ctx=context.memory`` (or a copy)
    holds the same item ids, so nothing is added twice.
    """
    if not memory.items:
        return False
    own = agent.chat_ctx.items
    if {item.id for item in memory.items} & {item.id for item in own}:
        return False
    await agent.update_chat_ctx(llm.ChatContext(items=[*memory.items, *own]))
    return True
