"""Operator commands over MQTT: the signed envelope, its checks, and what each command does.

Every message is untrusted input from a shared broker: anything that is not a well-formed,
correctly signed, fresh command for this node becomes a ``CommandRefused`` with a reason
(bad JSON, text that is not valid Unicode, huge or deeply nested bodies, wrong types), never
an exception that could end the channel's command task.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from voicelog.services.domain import FAILED, TurnStatus, normalise_mac, wall_ms
from voicelog.services.spool import DeliveryState

COMMANDS = ("status", "flush", "replay")
REPLAYABLE = FAILED
MAX_COMMAND_BYTES = 64 * 1024
MAX_ID_CHARS = 128
# Ids are remembered for command_max_age; past this many at once, commands are refused.
MAX_REMEMBERED_IDS = 10_000
_SIGNATURE = re.compile(r"^[0-9a-fA-F]{64}$")


def sign_command(key: str, body: dict[str, Any]) -> bytes:
    """The signed envelope of a command body (what an operator's tool publishes)."""
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    signature = hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()
    return json.dumps({"body": text, "sig": signature}).encode()


@dataclass(frozen=True)
class Command:
    """An operator command that passed verification."""

    id: str
    cmd: str
    args: dict[str, Any]
    ts_ms: int


class CommandRefused(Exception):
    """A command was not carried out; the message says why."""

    def __init__(self, reason: str, command_id: str | None = None) -> None:
        super().__init__(reason)
        self.command_id = command_id


class CommandVerifier:
    """Accept a command only if signed with our key, for this node, fresh, and never seen."""

    def __init__(self, key: str, node: str, max_age: float,
                 clock: Callable[[], int] = wall_ms) -> None:
        self._key, self._node = key.encode(), node
        self._max_age_ms = int(max_age * 1000)
        self._clock = clock
        self._seen: dict[str, int] = {}  # command id -> when it may be forgotten (ms)

    def verify(self, payload: bytes) -> Command:
        """The command in ``payload``, or CommandRefused naming the first check it failed."""
        text, signature = _envelope(payload)
        body = _json_object(text)
        _valid_unicode_inside(body)
        command_id = safe_id(body.get("id"))
        if not signature:
            raise CommandRefused("unsigned command", command_id)
        if not _SIGNATURE.match(signature):
            raise CommandRefused("bad signature", command_id)
        expected = hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise CommandRefused("bad signature", command_id)
        command = _command(body)
        if body.get("node") != self._node:
            raise CommandRefused(f"addressed to node {body.get('node')!r}", command.id)
        self._check_fresh_and_unused(command)
        return command

    def _check_fresh_and_unused(self, command: Command) -> None:
        now = self._clock()
        if abs(now - command.ts_ms) > self._max_age_ms:
            raise CommandRefused(f"stale: ts is {abs(now - command.ts_ms) / 1000:.0f} s from now, "
                                 f"limit {self._max_age_ms / 1000:g} s", command.id)
        self._seen = {i: until for i, until in self._seen.items() if until >= now}
        if command.id in self._seen:
            raise CommandRefused("replayed: command id already used", command.id)
        if len(self._seen) >= MAX_REMEMBERED_IDS:
            raise CommandRefused("too many recent commands; try again later", command.id)
        # Past this moment the freshness check alone refuses the id.
        self._seen[command.id] = max(now, command.ts_ms) + self._max_age_ms


def _envelope(payload: bytes) -> tuple[str, str]:
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandRefused(f"command larger than {MAX_COMMAND_BYTES} bytes")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandRefused("malformed: not UTF-8 text") from None
    envelope = _json_object(text)
    body, signature = envelope.get("body"), envelope.get("sig")
    if not isinstance(body, str):
        raise CommandRefused('malformed: expected {"body": "<json text>", "sig": "<hex>"}')
    _valid_unicode(body, "body")
    return body, signature if isinstance(signature, str) else ""


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise CommandRefused("malformed: not JSON (or nested too deeply)") from None
    if not isinstance(value, dict):
        raise CommandRefused("malformed: not a JSON object")
    return value


def _valid_unicode(text: str, what: str) -> None:
    """JSON escapes can spell lone surrogates, which no signer can encode: refuse them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise CommandRefused(f"malformed: {what} is not valid Unicode (lone surrogate)") from None


def _valid_unicode_inside(body: dict[str, Any]) -> None:
    """Escapes inside the body's own JSON can spell lone surrogates too."""
    try:
        _valid_unicode(json.dumps(body, ensure_ascii=False), "a value in the body")
    except RecursionError:
        raise CommandRefused("malformed: nested too deeply") from None


def safe_id(value: Any) -> str | None:
    """A command id fit to echo in an answer and a log line, else None."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_CHARS:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


def _command(body: dict[str, Any]) -> Command:
    command_id, cmd, ts, args = body.get("id"), body.get("cmd"), body.get("ts"), body.get("args", {})
    if not isinstance(command_id, str) or not 0 < len(command_id) <= MAX_ID_CHARS:
        raise CommandRefused(f"malformed: id must be a string of 1-{MAX_ID_CHARS} characters")
    if cmd not in COMMANDS:
        raise CommandRefused(f"unknown command {cmd!r}; known: {', '.join(COMMANDS)}", command_id)
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise CommandRefused("malformed: ts must be milliseconds since the epoch", command_id)
    if not isinstance(args, dict):
        raise CommandRefused("malformed: args must be an object", command_id)
    return Command(command_id, cmd, args, ts)


class FleetCommands:
    """Carry out verified ``flush`` and ``replay`` commands on this box's spool and shipper."""

    def __init__(self, delivery: DeliveryState, wake: Callable[[], None],
                 now: Callable[[], int] = wall_ms) -> None:
        self._delivery, self._wake, self._now = delivery, wake, now
        self._spool = delivery.spool

    async def run(self, command: Command) -> dict[str, Any]:
        """Do it; return what was done (CommandRefused for bad arguments)."""
        handler, allowed = {"flush": (self.flush, ("session",)),
                            "replay": (self.replay, ("session", "mac", "status"))}[command.cmd]
        return handler(**_selectors(command.args, allowed))

    def flush(self, session: str | None = None) -> dict[str, Any]:
        """Send a session's (or every session's) pending turns now, whatever the batch rules."""
        if session is not None and self._spool.session(session) is None:
            raise CommandRefused(f"unknown session {session!r}")
        sessions = [session] if session else [b.session_id for b in self._delivery.backlog()]
        for session_id in sessions:
            self._spool.request_flush(session_id)
        self._wake()
        return {"sessions": len(sessions)}

    def replay(self, session: str | None = None, mac: str | None = None,
               status: str | None = None) -> dict[str, Any]:
        """Make parked / dead-lettered turns pending again and send them now."""
        if not (session or mac or status):
            raise CommandRefused("replay needs a selector: session, mac or status")
        statuses = REPLAYABLE if status is None else (TurnStatus(status),)
        chosen: dict[str, list[int]] = defaultdict(list)
        for session_id, seq in self._spool.turns_in_status(statuses, session_id=session, mac=mac):
            chosen[session_id].append(seq)
        requeued = sum(self._delivery.requeue(sid, seqs, self._now()) for sid, seqs in chosen.items())
        for session_id in chosen:
            self._spool.request_flush(session_id)
        self._wake()
        return {"turns": requeued, "sessions": len(chosen)}


def _selectors(args: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    """The command's arguments, checked: only ``allowed`` keys, strings, a known status."""
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise CommandRefused(f"unknown argument {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    args = dict(args)
    for key in allowed:
        if key in args and not isinstance(args[key], str):
            raise CommandRefused(f"{key} must be a string")
    if "mac" in args:
        args["mac"] = normalise_mac(args["mac"]) or _refuse(f"{args['mac']!r} is not a MAC address")
    if "status" in args and args["status"] not in REPLAYABLE:
        _refuse(f"status must be one of {', '.join(s.value for s in REPLAYABLE)}")
    return args


def _refuse(reason: str) -> Any:
    raise CommandRefused(reason)
