"""How a sub-package shows its face: public names, each loaded from its private module on first use.

A face that imported all its rooms at once would make the lightest command pay for the heaviest
one (``voicelog backups list`` does not need aiohttp); loading on first use (PEP 562) keeps the
face small and the start fast. Each face declares its names once, room by room.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_face(package: str, rooms: Mapping[str, tuple[str, ...]]
              ) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``__all__``, ``__getattr__`` and ``__dir__`` for a package whose names live in ``rooms``."""
    where = {name: module for module, names in rooms.items() for name in names}

    def __getattr__(name: str) -> Any:
        try:
            module = where[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(importlib.import_module(package), name, value)  # the next lookup is a plain one
        return value

    def __dir__() -> list[str]:
        return sorted(where)

    return sorted(where), __getattr__, __dir__
