"""Files holding children's words are private and never written through a link.

``backups export --output`` makes a new 0600 file and renames it over the target, refusing a
symbolic link; the data folder is tightened to 0700 whenever the spool is opened (a tmpfs root
is 1777 when mounted), and the change is logged.
"""

from __future__ import annotations

import os
import stat

import pytest
from structlog.testing import capture_logs

from tests.kits.box import capture, cli, make_box
from tests.kits.faults import small_filesystem
from tests.kits.settings import make_settings
from voicelog.agent.wiring import host_spool

WORDS = "the treasure is under the third stair"


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    """Rich lays tables out for 200 columns, so long ids stay on one line."""
    monkeypatch.setenv("COLUMNS", "200")


async def test_export_is_private_replaces_a_loose_file_and_refuses_a_link(tmp_path, reference_manager, capsys):
    """A symlink target is refused and left alone; an existing 0644 file becomes a private export."""
    box = make_box(tmp_path, reference_manager)
    session_id = await capture(box, [WORDS])
    victim = tmp_path / "victim.txt"
    victim.write_text("not yours to overwrite")
    link = tmp_path / "ticket.json"
    link.symlink_to(victim)
    assert cli(box, "export", session_id, "--output", str(link)) == 1
    assert "symbolic link" in capsys.readouterr().err
    assert victim.read_text() == "not yours to overwrite" and link.is_symlink()

    loose = tmp_path / "old-ticket.json"
    loose.write_text("an older export")
    os.chmod(loose, 0o644)
    assert cli(box, "export", session_id, "--output", str(loose)) == 0
    assert mode(loose) == 0o600 and WORDS in loose.read_text()
    fresh = tmp_path / "new-ticket.csv"
    assert cli(box, "export", session_id, "--format", "csv", "--output", str(fresh)) == 0
    assert mode(fresh) == 0o600 and WORDS in fresh.read_text()
    assert [p.name for p in tmp_path.glob(".*.part")] == [], "no half-written export is left"


def test_a_loose_data_folder_is_tightened_when_the_spool_opens(tmp_path):
    """A tmpfs mounted as the data folder is 1777; opening the spool makes it 0700 and says so."""
    with small_filesystem(tmp_path / "mnt", 1024) as mount:
        os.chmod(mount, 0o1777)
        settings = make_settings(tmp_path, chat_history={"backup_dir": str(mount)})
        with capture_logs() as logs:
            host_spool(settings).close()
        assert mode(mount) == 0o700
        tightened = [e for e in logs if e["event"] == "data_directory_tightened"]
        assert tightened and tightened[0]["was"] == "0o1777"
