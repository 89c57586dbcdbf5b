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
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion

from voicelog.services.config import ConfigError, MqttSettings
from voicelog.services.domain import first_of, wall_ms
from voicelog.services.ops._metrics import Metrics
from voicelog.services.ops._mqtt_commands import CommandRefused, CommandVerifier, FleetCommands
from voicelog.services.ops._supervise import supervised

log = structlog.get_logger("voicelog.mqtt")
StatusSource = Callable[[], Awaitable[dict[str, Any]]]
# How often status is recomputed to publish changes promptly (cheap: cached spool figures).
CHANGE_CHECK_INTERVAL = 1.0
KEEPALIVE = 30
RECONNECT_DELAY = (1, 60)
COMMAND_QUEUE = 100
# Fields that change on every look and so do not count as a change of status.
VOLATILE_FIELDS = ("ts", "oldest_pending_age_s")


def node_id_of(settings: MqttSettings) -> str:
    """This box's name in topics: the configured node id, else the host name."""
    node = settings.node_id or socket.gethostname()
    if not node or any(c in node for c in "/+#"):
        raise ConfigError(f"mqtt.node_id {node!r} cannot be used in a topic (no / + #)")
    return node


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
                 commands: FleetCommands | None = None, metrics: Metrics | None = None) -> None:
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
        self._metrics = metrics
        self.command_task_restarts = 0
        self._commands_down: str | None = None  # why the command task is not serving, while it is not
        self._client = self._make_client()

    def commands_problem(self) -> str | None:
        """Why commands are not being served right now (None: served, or switched off)."""
        return self._commands_down

    async def run(self, stop: asyncio.Event) -> None:
        """Connect (in the background), publish status and serve commands until ``stop``."""
        self._loop = asyncio.get_running_loop()
        self._client.connect_async(self.settings.host, self.settings.port, keepalive=KEEPALIVE)
        self._client.loop_start()
        log.info("mqtt_channel_started", broker=f"{self.settings.host}:{self.settings.port}",
                 node=self.node, commands=self._verifier is not None)
        serving = supervised("mqtt_commands", self._serve_commands, stop, on_crash=self._commands_crashed)
        tasks = [asyncio.create_task(self._publish_status(stop), name="voicelog-mqtt-status"),
                 asyncio.create_task(serving, name="voicelog-mqtt-commands")]
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
        # waits on the network, so calling it from the event loop is safe. Whatever text slips
        # through is sent escaped rather than failing to encode.
        payload = json.dumps(document, ensure_ascii=False).encode("utf-8", "backslashreplace")
        self._client.publish(topic, payload, qos=1, retain=retain)

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
                **figures, "commands": self._verifier is not None and self._commands_down is None,
                "command_task_restarts": self.command_task_restarts}

    def _enqueue(self, payload: bytes) -> None:
        try:
            self._inbox.put_nowait(payload)
        except asyncio.QueueFull:
            log.warning("mqtt_command_dropped_queue_full")

    async def _serve_commands(self) -> None:
        """Answer each message in its own guard: no message can end this loop."""
        if self._commands_down is not None:
            log.warning("mqtt_command_task_restarted", restarts=self.command_task_restarts)
            self._commands_down = None
            self._republish.set()
        while True:
            payload = await self._inbox.get()
            try:
                answer = await self._answer(payload)
            except Exception:  # noqa: BLE001 - a bug in one answer must not stop the next
                log.exception("mqtt_command_failed_unexpectedly")
                self._count("failed")
                answer = {"node": self.node, "ts": wall_ms(), "id": None, "ok": False,
                          "error": "failed: internal error (logged)"}
            self._publish(self.result_topic, answer)

    def _commands_crashed(self, error: BaseException) -> None:
        self.command_task_restarts += 1
        self._commands_down = f"command task crashed ({type(error).__name__}); restarting"
        if self._metrics is not None:
            self._metrics.mqtt_command_restarts.inc()
        self._republish.set()

    def _count(self, result: str) -> None:
        if self._metrics is not None:
            self._metrics.mqtt_commands.labels(result=result).inc()

    async def _answer(self, payload: bytes) -> dict[str, Any]:
        answer: dict[str, Any] = {"node": self.node, "ts": wall_ms()}
        if self._verifier is None or self._commands is None:
            return {**answer, "id": None, "ok": False, "error": "commands are disabled"}
        try:
            command = self._verifier.verify(payload)
        except CommandRefused as refused:
            log.warning("mqtt_command_refused", command_id=refused.command_id, reason=str(refused))
            self._count("refused")
            return {**answer, "id": refused.command_id, "ok": False, "error": str(refused)}
        answer.update(id=command.id, cmd=command.cmd)
        log.info("mqtt_command_accepted", command_id=command.id, cmd=command.cmd)
        self._count("accepted")
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
