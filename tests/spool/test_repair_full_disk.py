"""A damaged spool found on a nearly full disk: no crash, no leftovers, capture goes on, repaired later.

On a real 8 MiB tmpfs: the repair needs about twice the spool's size, so with less free it is
deferred. Nothing half-done is left (no work copies, no half-built spool); the damaged files are
moved (renamed) into quarantine with a ``repair-pending.json``; a fresh spool takes new turns at
once; every later start works; and once space returns the running daemon merges the
quarantined turns back by itself and delivers them.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys

from tests.kits import REPO
from tests.kits.delivery import eventually
from tests.kits.faults import (
    checkpoint,
    fill_disk,
    fill_spool,
    flip_bits,
    leaf_page_headers,
    small_filesystem,
)
from tests.kits.ops import daemon_config, running_daemon, wait_until_serving
from tests.kits.settings import config_file
from voicelog.services.backup import BackupWriter
from voicelog.services.capture import ChatHistoryService
from voicelog.services.config import load_settings
from voicelog.services.domain import ChatType, resolve_identity
from voicelog.services.spool import open_spool

MAC = "68:25:dd:ba:39:78"


async def ship_once(config) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "main.py", "--config", str(config), "ship", "--once", cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output = (await process.communicate())[0].decode()
    return process.returncode, output


def private(root, skip) -> list[str]:
    """Paths under ``root`` readable by others (there must be none)."""
    return [str(p) for p in [root, *root.rglob("*")] if p != skip and p.exists()
            and stat.S_IMODE(p.lstat().st_mode) & 0o077 and not p.is_symlink()]


async def test_a_damaged_spool_on_a_full_disk_is_set_aside_and_merged_back_once_space_returns(
        tmp_path, reference_manager):
    """ship --once twice on the full disk, capture meanwhile, then the daemon repairs and delivers all."""
    await reference_manager.bind_device(MAC)
    with small_filesystem(tmp_path / "mnt", 8 * 1024) as mount:
        backups = mount / "backups"
        expected = fill_spool(backups, sessions=4, turns=600)
        spool_path = backups / "spool.db"
        checkpoint(spool_path)
        leaves = leaf_page_headers(spool_path)
        flip_bits(spool_path, [leaves[len(leaves) // 2] + 3, leaves[len(leaves) // 3]])
        filler = fill_disk(mount)
        os.truncate(filler, filler.stat().st_size - 1024 * 1024)  # 1 MiB free: less than a repair needs
        config = config_file(tmp_path, manager=reference_manager, chat_history={"backup_dir": str(backups)})

        for _ in range(2):  # the second start must not fail on what the first one left
            code, output = await ship_once(config)
            assert code == 1 and "Traceback" not in output, output
            assert "wait for free disk space" in output
        [qdir] = list((backups / "quarantine").iterdir())
        assert {p.name for p in qdir.iterdir()} == {"spool.db", "repair-pending.json"}
        assert not list(backups.glob("spool.db.rebuilt*")) and private(mount, filler) == []

        settings = load_settings(config, environ={})
        spool = open_spool(spool_path, backup_dir=backups)
        live = ChatHistoryService(spool, resolve_identity(f"during-the-outage_{MAC.replace(':', '')}"),
                                  settings.chat_history, backups=BackupWriter(backups))
        live.add_message(ChatType.USER, "captured while the disk was full")
        await live.cleanup()
        assert live.stats.stored == 1 and live.stats.lost == 0
        spool.close()

        daemon = daemon_config(tmp_path, reference_manager, chat_history={"backup_dir": str(backups)})
        async with running_daemon(daemon) as process:
            await wait_until_serving(process)
            filler.unlink()  # space returns

            async def everything_delivered() -> bool:
                for session_id, contents in expected.items():
                    if [r["content"] for r in await reference_manager.rows(session_id)] != contents:
                        return False
                return len(await reference_manager.rows(live.session_id)) == 1

            await eventually(everything_delivered, timeout=60, what="the set-aside turns at the Manager")
        assert "spool_repair_finished" in process.logs()
        assert {p.name for p in qdir.iterdir()} == {"spool.db", "report.json"}
