"""voicelog: ``python main.py <command>`` (see ``python main.py --help``)."""

import sys
import types
from pathlib import Path

try:
    import voicelog.cli  # noqa: F401 - installed (pip install -e .): the normal case
except ModuleNotFoundError:
    # A checkout run without installing: the folder holding this file is the voicelog package.
    package = types.ModuleType("voicelog")
    package.__path__ = [str(Path(__file__).resolve().parent)]
    sys.modules["voicelog"] = package

from voicelog.cli.app import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
