"""Children's words are erased on request and kept no longer than the settings say."""

import os
import stat

from tests.kits.settings import make_settings
from voicelog.agent.simulation.run import SimulatedDevice, simulate
from voicelog.cli.app import main

MAC = "68:25:dd:ba:39:78"
OTHER = "68:25:dd:ba:39:79"
WORDS = "grandma hides the cookies in the blue tin"


def script(words):
    return ({"user": words, "agent": "Shh, that is our secret!"}, {"user": "ok bye", "agent": "Bye!"})


def every_file(root):
    return [p for p in root.rglob("*") if p.is_file()]


def holding(root, needle: str):
    return [p for p in every_file(root) if needle.encode() in p.read_bytes()]


async def test_purge_leaves_nothing_for_that_mac_anywhere_in_the_data_directory(tmp_path):
    """After `backups purge --mac`, no file under the data directory holds the MAC or the words."""
    settings = make_settings(tmp_path)
    await simulate(settings, [SimulatedDevice(MAC, script(WORDS)), SimulatedDevice(OTHER, script("pizza day"))],
                   time_scale=0.02, deliver=False)
    root = tmp_path / "backups"
    assert holding(root, WORDS), "precondition: the words were captured"
    config = tmp_path / "voicelog-test.yaml"
    assert main(["--config", str(config), "backups", "purge", "--mac", MAC]) == 0
    assert holding(root, WORDS) == []
    assert holding(root, MAC) == [] and holding(root, MAC.replace(":", "")) == []
    assert holding(root, "pizza day"), "the other device's chats stay"


async def test_purge_dry_run_changes_nothing(tmp_path, capsys):
    """--dry-run lists what would go and leaves every file as it was."""
    settings = make_settings(tmp_path)
    await simulate(settings, [SimulatedDevice(MAC, script(WORDS))], time_scale=0.02, deliver=False)
    before = {p: p.read_bytes() for p in every_file(tmp_path / "backups")}
    config = str(tmp_path / "voicelog-test.yaml")
    assert main(["--config", config, "backups", "purge", "--mac", MAC, "--dry-run"]) == 0
    assert "would erase 1 session" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in every_file(tmp_path / "backups")} == before


async def test_spool_and_backups_are_readable_by_the_service_user_only(tmp_path):
    """Data files are 0600 and their folders 0700."""
    settings = make_settings(tmp_path)
    await simulate(settings, [SimulatedDevice(MAC, script(WORDS))], time_scale=0.02, deliver=False)
    for path in every_file(tmp_path / "backups"):
        assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0, path
    for folder in [tmp_path / "backups", *[p for p in (tmp_path / "backups").rglob("*") if p.is_dir()]]:
        assert stat.S_IMODE(os.stat(folder).st_mode) & 0o077 == 0, folder


def test_retention_drops_old_delivered_and_overdue_undelivered_and_warns_before(tmp_path):
    """Delivered turns go after retention_days, undelivered after max_undelivered_days, with warning."""
    from voicelog.agent.wiring import host_spool
    from voicelog.services.capture import ChatHistoryService
    from voicelog.services.domain import ChatType, resolve_identity
    from voicelog.services.privacy import expiring_undelivered, prune
    from voicelog.services.spool import DeliveryState

    day = 86_400_000
    now = 1_800_000_000_000
    settings = make_settings(tmp_path, chat_history={"retention_days": 7, "max_undelivered_days": 30})
    spool = host_spool(settings)

    def session(name, age_days, delivered):
        at = now - age_days * day
        service = ChatHistoryService(spool, resolve_identity(f"{name}_6825ddba3978"), settings.chat_history,
                                     now=lambda: at)
        turn = service.add_message(ChatType.USER, f"words of {name}")
        spool.end_session(service.session_id, ended_ms=at, reason="test")
        if delivered:
            DeliveryState(spool).mark_delivered(service.session_id, [turn.seq], at)
        return service.session_id

    fresh_delivered = session("fresh-delivered", 2, True)
    old_delivered = session("old-delivered", 8, True)
    old_undelivered = session("old-undelivered", 8, False)
    expiring = session("expiring-undelivered", 28, False)
    overdue = session("overdue-undelivered", 31, False)

    warned = {s.session_id for s in expiring_undelivered(spool, settings.chat_history, now_ms=now)}
    assert warned == {expiring, overdue}
    report = prune(spool, settings.chat_history.backup_dir, settings.chat_history, now_ms=now,
                   include_undelivered=True)
    assert {s.session_id for s in report.removed} == {old_delivered, overdue}
    left = {s.session_id for s in spool.sessions()}
    assert left == {fresh_delivered, old_undelivered, expiring}


def test_quarantined_copies_expire_with_undelivered_turns(tmp_path):
    """A quarantine folder older than max_undelivered_days is removed by the automatic prune."""
    from voicelog.agent.wiring import host_spool
    from voicelog.services.privacy import prune

    settings = make_settings(tmp_path, chat_history={"max_undelivered_days": 30})
    spool = host_spool(settings)
    old = tmp_path / "backups" / "quarantine" / "20260101T000000Z"
    fresh = tmp_path / "backups" / "quarantine" / "20261120T000000Z"
    for folder, age_days in ((old, 40), (fresh, 2)):
        folder.mkdir(parents=True)
        (folder / "spool.db").write_bytes(b"damaged copy with words")
        when = 1_800_000_000 - age_days * 86_400
        os.utime(folder, (when, when))
    report = prune(spool, settings.chat_history.backup_dir, settings.chat_history,
                   now_ms=1_800_000_000_000, include_undelivered=True)
    assert report.quarantine_removed == [str(old)]
    assert not old.exists() and fresh.exists()
