"""Memory tests share the machine's Redis (started when down), each under a key prefix of its own."""

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.kits.redis import drop_prefix, ensure_redis_running, unique_prefix


@dataclass(frozen=True)
class RedisSpace:
    """Where a test's memory lives in Redis."""

    url: str
    prefix: str

    def memory(self, **extra: object) -> dict[str, object]:
        """The ``memory:`` config section for this space."""
        return {"backend": "redis", "redis_url": self.url, "key_prefix": self.prefix, **extra}


@pytest.fixture
def redis_space() -> Iterator[RedisSpace]:
    """A key prefix of this test's own on the machine's Redis, emptied afterwards."""
    space = RedisSpace(ensure_redis_running(), unique_prefix())
    yield space
    drop_prefix(space.url, space.prefix)
