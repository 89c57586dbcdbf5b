"""voicelog: ``python main.py <command>`` (see ``python main.py --help``)."""

import sys

from cli.app import main

if __name__ == "__main__":
    sys.exit(main())
