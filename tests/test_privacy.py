"""Children's words are erased on request and kept no longer than the settings say."""

import os
import stat


from agent.simulate import SimulatedDevice, simulate
from cli.app import main
from tests.settings_factory import make_settings

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
    assert "would erase 1 sessions" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in every_file(tmp_path / "backups")} == before


async def test_spool_and_backups_are_readable_by_the_service_user_only(tmp_path):
    """Data files are 0600 and their folders 0700."""
    settings = make_settings(tmp_path)
    await simulate(settings, [SimulatedDevice(MAC, script(WORDS))], time_scale=0.02, deliver=False)
    for path in every_file(tmp_path / "backups"):
        assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0, path
    for folder in [tmp_path / "backups", *[p for p in (tmp_path / "backups").rglob("*") if p.is_dir()]]:
        assert stat.S_IMODE(os.stat(folder).st_mode) & 0o077 == 0, folder
