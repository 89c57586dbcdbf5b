"""What can go wrong storing a turn, and how the capture side should take each kind of failure.

The spool is the only package that knows SQLite: others ask these questions instead of
inspecting sqlite3 exceptions themselves.
"""

from __future__ import annotations

import sqlite3


class SpoolError(RuntimeError):
    """The spool could not store or read a record."""


class SpoolFull(SpoolError):
    """The spool reached its size cap; new turns are refused, stored ones are kept."""


class DuplicateTurn(SpoolError):
    """A turn with this (session, seq) is already stored; retrying cannot help."""


class SessionErased(SpoolError):
    """The session was erased on request (``backups purge``) or is gone: its writes are refused.

    Capture stops quietly and counts what it could not keep; retrying cannot help.
    """


# Failures that may pass (space freed, lock released, file rebuilt): hold the write and retry.
TRANSIENT_ERRORS = (SpoolError, sqlite3.DatabaseError, OSError)
# Failures no retry can fix (the row exists, a value is refused, the spool was closed): drop.
PERMANENT_ERRORS = (DuplicateTurn, SessionErased, sqlite3.IntegrityError, sqlite3.ProgrammingError,
                    sqlite3.InterfaceError, sqlite3.DataError)
# Anything reading or writing the spool or its files may raise.
STORAGE_ERRORS = (OSError, sqlite3.Error)


def is_disk_full(exc: BaseException) -> bool:
    """The disk (or the spool's filesystem) had no room for the write."""
    return getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL"


def may_be_replaced(exc: BaseException) -> bool:
    """A database error that is not an operational one: the file may have been rebuilt under us."""
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)
