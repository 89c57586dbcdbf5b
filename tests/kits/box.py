"""A support box for tests: settings in a config file, its spool and backups, and the CLI on it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.kits.delivery import room_for
from tests.kits.settings import delivery_settings
from voicelog.agent.wiring import host_spool
from voicelog.cli.app import main
from voicelog.services.backup import BackupWriter
from voicelog.services.capture import ChatHistoryService
from voicelog.services.config import Settings
from voicelog.services.domain import ChatType, resolve_identity
from voicelog.services.shipping import Shipper
from voicelog.services.shipping.manager import ManagerApiClient
from voicelog.services.spool import DeliveryState, Spool

MAC = "68:25:dd:ba:39:78"
OTHER_MAC = "68:25:dd:00:00:01"


@dataclass
class Box:
    """One edge box: its settings (written to a config file), spool and backup folder."""

    settings: Settings
    spool: Spool
    config: Path

    @property
    def backup_dir(self) -> Path:
        return Path(self.settings.chat_history.backup_dir)

    def backup_of(self, session_id: str) -> Path:
        return BackupWriter(self.backup_dir).path_for(self.spool.session(session_id))

    def statuses(self, session_id: str) -> dict[str, int]:
        return self.spool.status_counts(session_id)


def make_box(tmp_path: Path, manager, **sections) -> Box:
    """A box under ``tmp_path`` whose config points at ``manager``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    settings = delivery_settings(tmp_path, manager, **sections)
    return Box(settings, host_spool(settings), tmp_path / "voicelog-test.yaml")


def cli(box: Box, *args: str) -> int:
    """Run ``voicelog --config <box> backups ARGS`` in-process."""
    return main(["--config", str(box.config), "backups", *args])


async def capture(box: Box, texts: list[str], *, mac: str | None = MAC, n: int = 0, end: bool = True,
                  interrupted: set[int] = frozenset()) -> str:
    """Capture alternating child/toy turns into a session (continuing it if it exists)."""
    room = room_for(mac, n) if mac else f"00000000-0000-4000-8000-{n:012d}_nomac"
    identity = resolve_identity(room, {"device_mac": mac} if mac else {}, None)
    service = ChatHistoryService(box.spool, identity, box.settings.chat_history,
                                 backups=BackupWriter(box.backup_dir))
    first = max((t.seq for t in box.spool.turns(identity.session_id)), default=0)
    for offset, text in enumerate(texts):
        seq = first + offset + 1
        kind = ChatType.USER if seq % 2 else ChatType.AGENT
        service.add_message(kind, text, interrupted=seq in interrupted)
    if end:
        await service.cleanup("participant_disconnected")
    else:
        service.write_backup()
    return identity.session_id


async def ship(box: Box, max_attempts: int = 2) -> None:
    """One real shipper pass over everything deliverable, as `voicelog ship --once` does."""
    client = ManagerApiClient(box.settings.manager_api)
    try:
        await Shipper(DeliveryState(box.spool), client, box.settings, backups=BackupWriter(box.backup_dir),
                      max_attempts=max_attempts).run_once()
    finally:
        await client.aclose()


async def mixed_session(box: Box, manager) -> str:
    """A session with 2 delivered, 1 dead-letter, 2 parked and 2 pending turns."""
    await manager.bind_device(MAC)
    session_id = await capture(box, ["turn 1", "turn 2", "turn 3"], end=False, interrupted={2})
    manager.fail_http(400, 1)  # the first report is rejected outright: dead-letter
    await ship(box)
    await manager.unbind_device(MAC)  # the device is moved away: the Manager answers data:false
    await capture(box, ["turn 4", "turn 5"], end=False)
    await ship(box)
    await capture(box, ["turn 6", "turn 7"])
    assert box.statuses(session_id) == {"delivered": 2, "dead_letter": 1, "parked": 2, "pending": 2}
    return session_id
