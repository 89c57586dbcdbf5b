"""The optional MQTT fleet channel: a retained status per box and signed operator commands.

Topics (message formats in docs/operations.md):
- ``<prefix>/<node>/status``     retained; online status, or offline via the last will
- ``<prefix>/<node>/cmd``        signed commands in (``status``, ``flush``, ``replay``)
- ``<prefix>/<node>/cmd/result`` one answer per command, accepted or refused

paho runs its own network thread (``loop_start``) and reconnects with backoff; this module
hands messages between that thread and the asyncio loop, so a broker outage never blocks
capture or delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import socket
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion

from voicelog.services.config import ConfigError, MqttSettings
from voicelog.services.domain import FAILED, TurnStatus, first_of, normalise_mac, wall_ms
from voicelog.services.spool import DeliveryState

log = structlog.get_logger("voicelog.mqtt")
StatusSource = Callable[[], Awaitable[dict[str, Any]]]
# How often status is recomputed to publish changes promptly (cheap: cached spool figures).
CHANGE_CHECK_INTERVAL = 1.0
KEEPALIVE = 30
RECONNECT_DELAY = (1, 60)
COMMAND_QUEUE = 100
# Fields that change on every look and so do not count as a change of status.
VOLATILE_FIELDS = ("ts", "oldest_pending_age_s")
COMMANDS = ("status", "flush", "replay")
REPLAYABLE = FAILED
MAX_COMMAND_BYTES = 64 * 1024
MAX_ID_CHARS = 128
# Ids are remembered for command_max_age; past this many at once, commands are refused.
MAX_REMEMBERED_IDS = 10_000


def node_id_of(settings: MqttSettings) -> str:
    """This box's name in topics: the configured node id, else the host name."""
    node = settings.node_id or socket.gethostname()
    if not node or any(c in node for c in "/+#"):
        raise ConfigError(f"mqtt.node_id {node!r} cannot be used in a topic (no / + #)")
    return node


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
        command_id = body.get("id") if isinstance(body.get("id"), str) else None
        if not signature:
            raise CommandRefused("unsigned command", command_id)
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
    envelope = _json_object(payload.decode("utf-8", errors="replace"))
    text, signature = envelope.get("body"), envelope.get("sig")
    if not isinstance(text, str):
        raise CommandRefused('malformed: expected {"body": "<json text>", "sig": "<hex>"}')
    return text, signature if isinstance(signature, str) else ""


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise CommandRefused("malformed: not JSON") from None
    if not isinstance(value, dict):
        raise CommandRefused("malformed: not a JSON object")
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


def broker_client(settings: MqttSettings, client_id: str) -> mqtt.Client:
    """A paho client with the configured credentials and TLS, not yet connected."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    if settings.username:
        client.username_pw_set(settings.username, settings.password.reveal() or None)
    if settings.tls:
        client.tls_set(ca_certs=settings.ca_file or None)
    return client


class FleetChannel:
    """One box's connection to the fleet broker: status out, commands in, results out."""

    def __init__(self, settings: MqttSettings, *, status: StatusSource, version: str,
                 commands: FleetCommands | None = None) -> None:
        self.settings, self.version = settings, version
        self.node = node_id_of(settings)
        base = f"{settings.topic_prefix.strip('/')}/{self.node}"
        self.status_topic, self.cmd_topic = f"{base}/status", f"{base}/cmd"
        self.result_topic = f"{base}/cmd/result"
        self._status, self._commands = status, commands
        self._verifier = (CommandVerifier(settings.command_key.reveal(), self.node,
                                          settings.command_max_age)
                          if settings.command_key and commands is not None else None)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue(COMMAND_QUEUE)
        self._connected = asyncio.Event()
        self._republish = asyncio.Event()
        self._client = self._make_client()

    async def run(self, stop: asyncio.Event) -> None:
        """Connect (in the background), publish status and serve commands until ``stop``."""
        self._loop = asyncio.get_running_loop()
        self._client.connect_async(self.settings.host, self.settings.port, keepalive=KEEPALIVE)
        self._client.loop_start()
        log.info("mqtt_channel_started", broker=f"{self.settings.host}:{self.settings.port}",
                 node=self.node, commands=self._verifier is not None)
        tasks = [asyncio.create_task(self._publish_status(stop), name="voicelog-mqtt-status"),
                 asyncio.create_task(self._serve_commands(), name="voicelog-mqtt-commands")]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._go_offline()

    # --- paho side (runs on paho's network thread) ----------------------------------------

    def _make_client(self) -> mqtt.Client:
        client = broker_client(self.settings, f"voicelog-{self.node}")
        client.will_set(self.status_topic, self._offline("connection lost"), qos=1, retain=True)
        client.reconnect_delay_set(*RECONNECT_DELAY)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _on_connect(self, client: mqtt.Client, _: Any, __: Any, reason: Any, ___: Any) -> None:
        if reason.is_failure:
            log.warning("mqtt_connect_refused", reason=str(reason))
            return
        if self._verifier is not None:
            client.subscribe(self.cmd_topic, qos=1)
        log.info("mqtt_connected", node=self.node)
        self._to_loop(self._connected.set)
        self._to_loop(self._republish.set)

    def _on_connect_fail(self, _: mqtt.Client, __: Any) -> None:
        # Retried by paho with growing delays (up to a minute), so this stays rare.
        log.warning("mqtt_broker_unreachable_retrying",
                    broker=f"{self.settings.host}:{self.settings.port}")

    def _on_disconnect(self, _: mqtt.Client, __: Any, ___: Any, reason: Any, ____: Any) -> None:
        self._to_loop(self._connected.clear)
        if reason.is_failure:
            log.warning("mqtt_disconnected_reconnecting", reason=str(reason))

    def _on_message(self, _: mqtt.Client, __: Any, message: mqtt.MQTTMessage) -> None:
        self._to_loop(self._enqueue, bytes(message.payload))

    def _to_loop(self, callback: Callable[..., Any], *args: Any) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed while paho was finishing
                self._loop.call_soon_threadsafe(callback, *args)

    # --- asyncio side ---------------------------------------------------------------------

    def _publish(self, topic: str, document: dict[str, Any], *, retain: bool = False) -> None:
        """Hand a message to paho's thread; skipped while disconnected (status is resent later)."""
        if not self._connected.is_set():
            return
        # With loop_start, publish only queues the packet and pokes paho's thread: it never
        # waits on the network, so calling it from the event loop is safe.
        self._client.publish(topic, json.dumps(document, ensure_ascii=False), qos=1, retain=retain)

    async def _publish_status(self, stop: asyncio.Event) -> None:
        last_key, last_sent = None, float("-inf")
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                document = await self.status_document()
            except Exception:  # a status hiccup must not end the channel
                log.exception("mqtt_status_failed")
                document = None
            if document is not None and self._connected.is_set():
                key = {k: v for k, v in document.items() if k not in VOLATILE_FIELDS}
                due = loop.time() - last_sent >= self.settings.status_interval
                if key != last_key or due or self._republish.is_set():
                    self._republish.clear()
                    self._publish(self.status_topic, document, retain=True)
                    last_key, last_sent = key, loop.time()
            await first_of(self._republish, stop,
                           timeout=min(CHANGE_CHECK_INTERVAL, self.settings.status_interval))

    async def status_document(self) -> dict[str, Any]:
        """The online status message: the source's figures under node, version and time."""
        figures = await self._status()
        return {"node": self.node, "online": True, "version": self.version, "ts": wall_ms(),
                **figures, "commands": self._verifier is not None}

    def _enqueue(self, payload: bytes) -> None:
        try:
            self._inbox.put_nowait(payload)
        except asyncio.QueueFull:
            log.warning("mqtt_command_dropped_queue_full")

    async def _serve_commands(self) -> None:
        while True:
            payload = await self._inbox.get()
            self._publish(self.result_topic, await self._answer(payload))

    async def _answer(self, payload: bytes) -> dict[str, Any]:
        answer: dict[str, Any] = {"node": self.node, "ts": wall_ms()}
        if self._verifier is None or self._commands is None:
            return {**answer, "id": None, "ok": False, "error": "commands are disabled"}
        try:
            command = self._verifier.verify(payload)
        except CommandRefused as refused:
            log.warning("mqtt_command_refused", command_id=refused.command_id, reason=str(refused))
            return {**answer, "id": refused.command_id, "ok": False, "error": str(refused)}
        answer.update(id=command.id, cmd=command.cmd)
        log.info("mqtt_command_accepted", command_id=command.id, cmd=command.cmd)
        try:
            if command.cmd == "status":
                self._republish.set()
                result = await self.status_document()
            else:
                result = await self._commands.run(command)
        except CommandRefused as refused:
            return {**answer, "ok": False, "error": str(refused)}
        except Exception as error:  # answer, and keep serving commands
            log.exception("mqtt_command_failed", command_id=command.id, cmd=command.cmd)
            return {**answer, "ok": False, "error": f"failed: {type(error).__name__}"}
        return {**answer, "ok": True, "result": result}

    async def _go_offline(self) -> None:
        """Say goodbye on the status topic (the broker sends the will only on a lost link)."""
        if self._connected.is_set():
            info = self._client.publish(self.status_topic, self._offline("shutdown"), qos=1,
                                        retain=True)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(info.wait_for_publish, 2.0)
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        log.info("mqtt_channel_stopped", node=self.node)

    def _offline(self, reason: str) -> str:
        return json.dumps({"node": self.node, "online": False, "version": self.version,
                           "reason": reason, "ts": wall_ms()})
