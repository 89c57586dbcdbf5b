"""How values are bound: a list is one JSON parameter, read in SQL with ``json_each``."""

from __future__ import annotations

import json
from collections.abc import Iterable

from voicelog.services.domain import TurnStatus


def json_list(values: Iterable[object]) -> str:
    """A list bound as one parameter (read in SQL with json_each)."""
    return json.dumps([v.value if isinstance(v, TurnStatus) else v for v in values])
