"""The service install steps of systemd/README.md work as written, and the unit's env file is read as systemd reads it."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.kits import REPO
from voicelog.services.config import ConfigError, parse_environment

README = REPO / "systemd" / "README.md"
# Absolute places the steps write to; the walk moves each into a temporary root.
PLACES = ("/opt/voicelog", "/etc/voicelog", "/etc/systemd/system", "/usr/share/doc/voicelog", "/var/lib/voicelog")
NOT_HERE = ("useradd ", "systemctl ")  # no user database changes and no running systemd on a test machine


def install_steps() -> list[str]:
    """The commands of the README's "Install" section, in order."""
    section = README.read_text(encoding="utf-8").split("## Install", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "systemd/README.md has no sh block under Install"
    return [line for line in block.group(1).splitlines() if line.strip()]


def relocate(text: str, root: Path) -> str:
    for place in PLACES:
        text = text.replace(place, f"{root}{place}")
    return text


def sample_env(manager) -> str:
    """What an operator types into the env file: the example with its blanks filled in."""
    text = (REPO / "systemd" / "voicelog.env.example").read_text(encoding="utf-8")
    values = {"MANAGER_API_URL": manager.url, "MANAGER_API_SECRET": manager.secret,
              "LIVEKIT_API_KEY": "lk-key", "LIVEKIT_API_SECRET": "lk-secret-0123456789"}
    for key, value in values.items():
        text = re.sub(rf"^{key}=.*$", f"{key}={value}", text, flags=re.M)
    return text


def run_step(command: str, root: Path) -> subprocess.CompletedProcess:
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(root)}
    return subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def share_test_dependencies(venv: Path) -> None:
    """Let the new venv import this venv's dependencies (same pyproject.toml) instead of downloading them."""
    [site] = venv.glob("lib/python*/site-packages")
    (site / "voicelog-test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")


async def test_the_documented_install_steps_run_in_order_and_doctor_passes(tmp_path, reference_manager):
    """Every step of the README, as written, in a temporary root: the files land, doctor passes, systemd agrees."""
    root, ran, skipped = tmp_path / "root", [], []
    (root / "etc/systemd/system").mkdir(parents=True)  # there on every machine systemd runs
    for step in install_steps():
        if step.startswith(NOT_HERE):
            skipped.append(step)
            continue
        if step.startswith('"${EDITOR'):  # the operator fills the env file in
            (root / "etc/voicelog/voicelog.env").write_text(sample_env(reference_manager), encoding="utf-8")
            continue
        command = relocate(step, root).replace("-o voicelog -g voicelog ", "").replace("sudo -u voicelog ", "")
        if "/pip install " in command:
            command += " --no-deps"
            share_test_dependencies(root / "opt/voicelog/.venv")
        done = await asyncio.to_thread(run_step, command, root)
        assert done.returncode == 0, f"step failed: {step}\n{done.stdout}\n{done.stderr}"
        ran.append((step, done.stdout))
        for installed in (root / "etc").rglob("*"):  # installed files point into the root too
            if installed.is_file() and installed.suffix in (".yaml", ".service") and str(root) not in \
                    (text := installed.read_text(encoding="utf-8")):
                installed.write_text(relocate(text, root), encoding="utf-8")
    assert [s.split()[0] for s in skipped] == ["useradd", "systemctl", "systemctl"]
    doctor = next(out for step, out in ran if " doctor " in step)
    assert f"OK   backups  {root}/var/lib/voicelog/backups writable" in doctor
    assert "OK   manager" in doctor and "OK   livekit" in doctor and "all checks passed" in doctor
    unit = root / "etc/systemd/system/voicelog.service"
    documentation = re.search(r"^Documentation=file://(.+)$", unit.read_text(), re.M).group(1)
    assert Path(documentation).is_file(), "Documentation= points at a file the steps installed"
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert verify.returncode == 0 and "voicelog.service" not in verify.stderr, verify.stderr


def test_the_env_file_is_read_with_systemds_rules():
    """Comments, blank lines, quotes, escapes and continued lines read as systemd reads them."""
    text = """# the Manager
; also a comment

MANAGER_API_URL=http://10.0.0.5:8002/xiaozhi
  MANAGER_API_SECRET = "se cr#et \\"quoted\\""
SINGLE='taken $as written\\n'
HASH=abc#def
CONTINUED=first \\
  second
MULTI="line one
line two"
EMPTY=
"""
    assert parse_environment(text) == {
        "MANAGER_API_URL": "http://10.0.0.5:8002/xiaozhi", "MANAGER_API_SECRET": 'se cr#et "quoted"',
        "SINGLE": "taken $as written\\n", "HASH": "abc#def", "CONTINUED": "first second",
        "MULTI": "line one\nline two", "EMPTY": ""}


def test_a_broken_env_file_names_each_bad_line_and_never_echoes_it():
    """Every bad line is reported at once by number; the text of a line is never shown (it may be a secret)."""
    with pytest.raises(ConfigError) as info:
        parse_environment("GOOD=1\nsk-live-0123456789abcdef\n2BAD=x\nOPEN=\"never closed\n", where="voicelog.env")
    problems = info.value.problems
    assert problems[0] == "voicelog.env, line 2: expected KEY=VALUE with KEY a variable name"
    assert problems[1].startswith("voicelog.env, line 3:")
    assert problems[2] == 'voicelog.env, line 4 (OPEN): the " quote is never closed'
    assert "sk-live" not in str(info.value)


def test_a_commented_env_file_configures_any_command_before_or_after_it(tmp_path, capsys, monkeypatch):
    """`--env-file` feeds the file's values to the command, wherever on the line it is given."""
    from voicelog.cli.app import main

    # The command puts the file's values into this process's environment (its job processes
    # inherit them): set first, so the test's end restores the environment the others expect.
    monkeypatch.setenv("VOICELOG__CHAT_HISTORY__BACKUP_DIR", "unset-after-the-test")
    env_file = tmp_path / "voicelog.env"
    env_file.write_text("# batching\nVOICELOG__CHAT_HISTORY__BACKUP_DIR=" + str(tmp_path / "data") + "\n")
    assert main(["backups", "list", "--env-file", str(env_file), "--json"]) == 0
    assert f"read from no spool (none at {tmp_path / 'data' / 'spool.db'})" in capsys.readouterr().err
    assert main(["--env-file", str(tmp_path / "missing.env"), "doctor"]) == 2
    assert "cannot read environment file" in capsys.readouterr().err


def test_building_voicelog_prints_no_packaging_warning(tmp_path):
    """`pip wheel` of the project: setuptools finds nothing to warn about (schemas are packaged)."""
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(tmp_path), str(REPO)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    output = done.stdout + done.stderr
    assert "BuildBackendWarning" not in output and "is absent from the `packages`" not in output
    [wheel] = tmp_path.glob("voicelog-*.whl")
    listing = subprocess.run([sys.executable, "-m", "zipfile", "-l", str(wheel)], capture_output=True, text=True,
                             timeout=60, check=True).stdout
    assert "voicelog/services/backup/schemas/backup.schema.json" in listing


def test_the_readme_installs_test_tools_only_for_the_test_command():
    """README's two commands: the first installs voicelog alone, the second adds the test tools; CI runs the second."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    first_block = re.search(r"```sh\n(.*?)```", readme, re.S).group(1).splitlines()
    assert first_block == ["./scripts/setup.sh && .venv/bin/voicelog simulate",
                           "./scripts/setup.sh --dev && .venv/bin/python -m pytest -q"]
    assert "./scripts/setup.sh --dev && .venv/bin/python -m pytest -q" in (REPO / ".ci" / "run").read_text()
    wrong = subprocess.run(["bash", str(REPO / "scripts" / "setup.sh"), "--tests"], capture_output=True,
                           text=True, timeout=60, check=False)
    assert wrong.returncode == 2 and "usage: scripts/setup.sh [--dev]" in wrong.stderr
    assert shutil.which("bash")
