"""Opted-out devices leave nothing behind: no spool rows, no backup files, no content in logs."""

import io
import json

from tests.kits.settings import make_settings
from voicelog.agent.simulation.run import SimulatedDevice, simulate
from voicelog.services.config import LoggingSettings
from voicelog.services.ops import configure_logging

WORDS = "my secret hiding place is under the red slide"
SCRIPT = ({"user": WORDS, "agent": "I will keep that secret 🤫"},)


async def run_one(tmp_path, mac, attributes_flag=None, opt_out=()):
    settings = make_settings(tmp_path, chat_history={"opt_out_macs": list(opt_out)})
    device = SimulatedDevice(mac, SCRIPT)
    stream = io.StringIO()
    configure_logging(LoggingSettings(level="DEBUG", format="json"), stream=stream)
    try:
        summary = await simulate(settings, [device], time_scale=0.02, deliver=False)
    finally:
        configure_logging(LoggingSettings(level="WARNING", format="json"))
    return settings, summary, stream.getvalue()


def files_containing(root, text):
    return [p for p in root.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


async def test_a_listed_device_is_never_written_anywhere(tmp_path):
    """A MAC in opt_out_macs leaves no row, no backup and no log line with its words."""
    settings, summary, logs = await run_one(tmp_path, "68:25:dd:ba:39:78", opt_out=["68-25-DD-BA-39-78"])
    assert summary.user_turns == 0 and summary.sessions_failed == 0
    backups = tmp_path / "backups"
    assert list(backups.glob("*/*.json")) == []
    assert files_containing(backups, "secret hiding") == []
    assert "secret hiding" not in logs
    assert any(json.loads(line).get("event") == "opted_out_session_not_stored" for line in logs.splitlines())


async def test_other_devices_are_still_captured_beside_an_opt_out_list(tmp_path):
    """Opt-out is per device: an unlisted MAC is captured as usual."""
    _, summary, _ = await run_one(tmp_path, "68:25:dd:ba:39:79", opt_out=["68:25:dd:ba:39:78"])
    assert (summary.user_turns, summary.agent_turns) == (1, 1)


def test_the_gateway_attribute_opts_a_device_out():
    """A participant attribute voicelog_history=off opts out even an unlisted device."""
    from voicelog.handlers.opt_out import opted_out

    assert opted_out("68:25:dd:ba:39:78", {"voicelog_history": "off"}, ())
    assert opted_out("68:25:dd:ba:39:78", {"voicelog_history": " OFF "}, ())
    assert not opted_out("68:25:dd:ba:39:78", {"voicelog_history": "on"}, ())
    assert not opted_out("68:25:dd:ba:39:78", None, ())
