"""A reference Manager API for tests: the contract's behaviour and quirks over real MariaDB."""

from .endpoints import IDEMPOTENCY_HEADER, SESSION_CONTENT_LIMIT, UNAUTHORIZED_MSG
from .faults import GARBAGE_KINDS, HUGE_JSON_BYTES
from .schema import CONTENT_TYPES, table_statements
from .server import REPORT_TIME_UNITS, ReferenceManager

__all__ = [
    "CONTENT_TYPES",
    "GARBAGE_KINDS",
    "HUGE_JSON_BYTES",
    "IDEMPOTENCY_HEADER",
    "REPORT_TIME_UNITS",
    "SESSION_CONTENT_LIMIT",
    "UNAUTHORIZED_MSG",
    "ReferenceManager",
    "table_statements",
]
