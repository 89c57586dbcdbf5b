"""A stand-in job process for crash tests: captures numbered turns and acknowledges each.

Run: python -m tests.kits.capture_worker SPOOL SESSION_ID START COUNT [DURABILITY]
Prints "ack N" on stdout once ``add_message`` returned for turn N.
"""

import sys

from voicelog.services.capture import ChatHistoryService
from voicelog.services.config import ChatHistorySettings, LoggingSettings
from voicelog.services.domain import ChatType, resolve_identity
from voicelog.services.ops import configure_logging
from voicelog.services.spool import open_spool


def main(argv: list[str]) -> int:
    configure_logging(LoggingSettings(level="WARNING"))  # stdout carries only the acks
    spool_path, session_id, start, count = argv[0], argv[1], int(argv[2]), int(argv[3])
    durability = argv[4] if len(argv) > 4 else "process"
    spool = open_spool(spool_path, durability=durability)
    service = ChatHistoryService(spool, resolve_identity(session_id), ChatHistorySettings())
    for number in range(start, start + count):
        kind = ChatType.USER if number % 2 else ChatType.AGENT
        if service.add_message(kind, f"turn {number} ✓") is None or service.unstored:
            print(f"fail {number}", flush=True)
            return 1
        print(f"ack {number}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
