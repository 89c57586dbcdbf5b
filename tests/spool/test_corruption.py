"""Damaged spool and backup files: quarantined, every intact turn recovered, losses counted.

Each test damages real files the way disks and power cuts do (truncation, bit flips in page
headers, zero-filled pages, a destroyed header, broken JSON), then starts voicelog on them:
the file is moved to ``<backup_dir>/quarantine/<time>/`` with a report, the spool is rebuilt
from what is readable plus the JSON backups, and ``ship --once`` delivers everything once.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.kits import REPO
from tests.kits.faults import (
    PAGE,
    checkpoint,
    fill_spool,
    flip_bits,
    leaf_page_headers,
    ship_config,
    truncate,
    zero_fill,
)
from voicelog.cli.app import main
from voicelog.services.backup import backup_files, read_document
from voicelog.services.spool import DeliveryState, open_spool

MAC = "68:25:dd:ba:39:78"


def quarantines(backup_dir: Path) -> list[Path]:
    return sorted((backup_dir / "quarantine").glob("*")) if (backup_dir / "quarantine").exists() else []


def report_of(backup_dir: Path) -> dict:
    [folder] = quarantines(backup_dir)
    return json.loads((folder / "report.json").read_text())


def damage_spool(spool: Path, kind: str) -> None:
    """Damage the main spool file in one of the ways real storage fails."""
    checkpoint(spool)
    leaves = leaf_page_headers(spool)
    if kind == "truncated":
        truncate(spool, 0.55)
    elif kind == "bit_flipped":
        flip_bits(spool, [leaves[len(leaves) // 2] + 3, leaves[len(leaves) // 3]])
    elif kind == "zero_filled_pages":
        zero_fill(spool, leaves[len(leaves) // 2], 3 * PAGE)
    elif kind == "zero_filled_file":
        zero_fill(spool)
    elif kind == "header_destroyed":
        zero_fill(spool, 0, PAGE)


@pytest.mark.parametrize("kind", ["truncated", "bit_flipped", "zero_filled_pages", "zero_filled_file",
                                  "header_destroyed"])
async def test_damaged_spool_is_quarantined_and_every_turn_still_delivered_once(
        tmp_path, reference_manager, kind):
    """After the damage, ship --once rebuilds the spool and MariaDB gets every turn once, in order."""
    await reference_manager.bind_device(MAC)
    backups = tmp_path / "backups"
    expected = fill_spool(backups, sessions=4, turns=30)
    damage_spool(backups / "spool.db", kind)
    config = ship_config(tmp_path, reference_manager)
    assert await asyncio.to_thread(main, ["--config", str(config), "ship", "--once"]) == 0
    report = report_of(backups)
    assert report["lost"] == 0 and report["from_spool"] + report["from_backups"] == 120
    assert "spool.db" in report["spool_files"]
    assert (Path(report["quarantine_dir"]) / "spool.db").exists(), "the damaged file is kept"
    for session_id, contents in expected.items():
        rows = [r["content"] for r in await reference_manager.rows(session_id)]
        assert rows == contents
    assert await asyncio.to_thread(main, ["--config", str(config), "ship", "--once"]) == 0
    assert len(quarantines(backups)) == 1, "a second start must find nothing to repair"


def test_turns_no_source_still_holds_are_counted_as_lost_and_recorded(tmp_path):
    """Zeroed pages and no backups: exactly the unrecoverable turns are reported and recorded."""
    backups = tmp_path / "backups"
    expected = fill_spool(backups, sessions=3, turns=60)
    spool_path = backups / "spool.db"
    checkpoint(spool_path)
    leaves = leaf_page_headers(spool_path)
    zero_fill(spool_path, leaves[len(leaves) // 2], 2 * PAGE)
    for path in backup_files(backups):
        path.unlink()
    spool = open_spool(spool_path)
    try:
        report = spool.recovery
        present = {s: {t.seq for t in spool.turns(s)} for s in expected}
        missing = {s: sorted(set(range(1, 61)) - q) for s, q in present.items()}
        missing = {s: m for s, m in missing.items() if m}
        assert report is not None and report.lost > 0, "the zeroed pages held turns"
        assert report.lost_seqs == missing and report.lost == sum(map(len, missing.values()))
        assert spool.losses() == {"spool_damaged": report.lost}
        assert report.unreadable_regions >= 1
    finally:
        spool.close()


@pytest.mark.parametrize("damage", ["truncated", "zero_filled", "bit_flipped", "not_utf8", "wrong_document"])
def test_damaged_backup_is_quarantined_and_rewritten_from_the_spool(tmp_path, damage):
    """A broken backup file moves to quarantine and a correct one is written from the spool."""
    backups = tmp_path / "backups"
    expected = fill_spool(backups, sessions=2, turns=10)
    target = backup_files(backups)[0]
    data = target.read_bytes()
    broken = {"truncated": data[: len(data) // 2], "zero_filled": bytes(len(data)),
              "bit_flipped": data.replace(b'"turns": [', b'"turns"; [', 1),
              "not_utf8": data[:40] + b"\xff\xfe" + data[42:],
              "wrong_document": json.dumps({"format": "something-else"}).encode()}[damage]
    target.write_bytes(broken)
    spool = open_spool(backups / "spool.db")
    try:
        report = spool.recovery
        assert report is not None and report.backups_quarantined == [str(target.relative_to(backups))]
        assert report.backups_rebuilt == report.backups_quarantined
        document = read_document(target)
        assert [t["content"] for t in document["turns"]] == expected[document["session_id"]]
        kept = Path(report.quarantine_dir) / "backups" / target.relative_to(backups)
        assert kept.read_bytes() == broken
    finally:
        spool.close()


def test_capture_keeps_going_while_another_process_rebuilds_a_damaged_spool(tmp_path):
    """A connection open on the damaged file follows the rebuilt one and loses no later turn."""
    backups = tmp_path / "backups"
    expected = fill_spool(backups, sessions=1, turns=8)
    [session_id] = expected
    first = open_spool(backups / "spool.db")
    zero_fill(backups / "spool.db")
    second = open_spool(backups / "spool.db")  # others hold it open: it recovers on the cheap check
    try:
        assert second.recovery is not None and second.recovery.from_backups == 8
        assert first.reopen_if_replaced() is True
        assert [t.content for t in first.turns(session_id)] == expected[session_id]
    finally:
        first.close()
        second.close()


async def test_ship_once_process_starts_on_a_zero_filled_spool_twice_in_a_row(tmp_path, reference_manager):
    """The real command, as systemd would restart it: recovers, delivers, exits 0; no crash loop."""
    await reference_manager.bind_device(MAC)
    backups = tmp_path / "backups"
    expected = fill_spool(backups, sessions=2, turns=5)
    zero_fill(backups / "spool.db")
    config = ship_config(tmp_path, reference_manager)
    for _ in range(2):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "main.py", "--config", str(config), "ship", "--once", cwd=REPO,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
        assert process.returncode == 0, (out + err).decode()[-2000:]
    assert report_of(backups)["from_backups"] == 10
    for session_id, contents in expected.items():
        assert [r["content"] for r in await reference_manager.rows(session_id)] == contents


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[Path, dict[str, list[str]]]:
    """A spool with backups, built once and copied for each fuzz example."""
    backups = tmp_path_factory.mktemp("pristine") / "backups"
    expected = fill_spool(backups, sessions=3, turns=40)
    checkpoint(backups / "spool.db")
    return backups, expected


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["truncate", "zero_pages", "garbage_pages"]),
       where=st.floats(0.0, 0.99), pages=st.integers(1, 6), seed=st.integers(0, 2 ** 32))
def test_random_damage_never_stops_the_spool_from_opening(tmp_path_factory, pristine, kind, where,
                                                          pages, seed):
    """Whatever is damaged, the spool opens, every query works and no backed-up turn is missing."""
    source, expected = pristine
    backups = tmp_path_factory.mktemp("fuzz") / "backups"
    shutil.copytree(source, backups)
    spool_path = backups / "spool.db"
    size = spool_path.stat().st_size
    offset = int(size * where) // PAGE * PAGE
    if kind == "truncate":
        truncate(spool_path, where)
    elif kind == "zero_pages":
        zero_fill(spool_path, offset, pages * PAGE)
    else:
        with open(spool_path, "r+b") as handle:
            handle.seek(offset)
            handle.write(random.Random(seed).randbytes(pages * PAGE))
    spool = open_spool(spool_path)
    try:
        DeliveryState(spool).backlog()
        for session_id, contents in expected.items():
            assert [t.content for t in spool.turns(session_id)] == contents
            DeliveryState(spool).deliverable(session_id)
    finally:
        spool.close()


def test_recovery_killed_before_its_last_rename_is_finished_by_the_next_open(tmp_path):
    """Died after moving the damaged file aside, before putting the rebuilt one in place."""
    backups = tmp_path / "backups"
    expected = fill_spool(backups, sessions=2, turns=6)
    spool_path = backups / "spool.db"
    checkpoint(spool_path)
    spool_path.rename(f"{spool_path}.rebuilt")  # the rebuilt file, not yet renamed into place
    spool = open_spool(spool_path)
    try:
        assert not Path(f"{spool_path}.rebuilt").exists()
        for session_id, contents in expected.items():
            assert [t.content for t in spool.turns(session_id)] == contents
    finally:
        spool.close()
