"""Shared pytest fixtures: a throwaway MariaDB database and a running reference Manager."""

from typing import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from tests.kits.mariadb import create_database, drop_database, ensure_mariadb_running
from tests.reference_manager import ReferenceManager
from voicelog.services.config import LoggingSettings
from voicelog.services.ops import configure_logging


@pytest.fixture(autouse=True, scope="session")
def quiet_logs() -> None:
    """Log at WARNING as JSON during tests, as production would on a pipe."""
    configure_logging(LoggingSettings(level="WARNING", format="json"))


@pytest.fixture
def mariadb_db() -> Iterator[str]:
    """The name of a fresh, uniquely named MariaDB database, dropped after the test."""
    ensure_mariadb_running()
    name = create_database()
    yield name
    drop_database(name)


@pytest_asyncio.fixture
async def reference_manager(mariadb_db: str) -> AsyncIterator[ReferenceManager]:
    """A started ReferenceManager on 127.0.0.1 (a free port) over `mariadb_db`, stopped after."""
    async with ReferenceManager(mariadb_db) as manager:
        yield manager
