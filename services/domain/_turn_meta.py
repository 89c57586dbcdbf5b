"""What LiveKit measured about one turn, and the language it was spoken in: kept beside the turn.

livekit-agents 1.8.9 puts a ``MetricsReport`` on each ``ChatMessage.metrics``: epoch seconds for
the moments (``started_speaking_at``...) and seconds for the delays (``llm_node_ttft``...), every
key optional. voicelog keeps a fixed set of them in milliseconds, named with ``_ms`` so the unit is
in the name: moments as integer epoch ms, delays as ms with 0.1 ms precision. The ``*_metadata``
dicts (model names), request ids and rates are not kept. Nothing here is ever sent to the Manager:
its contract has no field for it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

# livekit key -> what it is: a moment (epoch s) or a delay (s).
MOMENTS = ("started_speaking_at", "stopped_speaking_at")
DELAYS = ("transcription_delay", "end_of_turn_delay", "on_user_turn_completed_delay",
          "llm_node_ttft", "llm_node_ttfs", "tts_node_ttfb", "playback_latency", "e2e_latency")
METRIC_KEYS = tuple(f"{key}_ms" for key in MOMENTS + DELAYS)
MAX_LANGUAGE_CHARS = 35  # the longest BCP-47 tag worth keeping ("zh-Hans-CN-x-..." and so on)


@dataclass(frozen=True)
class TurnMeta:
    """A turn's measurements (``METRIC_KEYS``, in ms) and its STT language (a BCP-47 tag)."""

    metrics: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    language: str | None = None

    def __bool__(self) -> bool:
        return bool(self.metrics) or self.language is not None

    def to_json(self) -> str | None:
        """The spool's JSON column; None when there is nothing to keep."""
        if not self:
            return None
        return json.dumps({"language": self.language, "metrics": dict(self.metrics)},
                          separators=(",", ":"))

    @property
    def response_latency_ms(self) -> float | None:
        """End of the child's speech to the first audio of this reply, as the child waited."""
        return self.metrics.get("e2e_latency_ms")


def turn_meta_from_json(text: str | None) -> TurnMeta | None:
    """A TurnMeta from the spool's JSON column (None, or anything unreadable, gives None)."""
    if not text:
        return None
    try:
        document = json.loads(text)
        return checked_turn_meta(document.get("metrics") or {}, document.get("language"))
    except (ValueError, AttributeError, TypeError):
        return None


def checked_turn_meta(metrics: Mapping[str, Any], language: Any) -> TurnMeta:
    """A TurnMeta from stored values (spool or backup): known keys with finite numbers only."""
    kept = {key: float(value) if isinstance(value, float) else int(value)
            for key, value in metrics.items()
            if key in METRIC_KEYS and _finite_number(value)}
    return TurnMeta(MappingProxyType(kept), _language(language))


def turn_meta_from_livekit(report: Mapping[str, Any] | None, language: Any = None) -> TurnMeta:
    """A TurnMeta from a livekit ``MetricsReport`` (seconds) and an STT language, in ms."""
    kept: dict[str, float] = {}
    for key, value in (report or {}).items():
        if not _finite_number(value):
            continue
        if key in MOMENTS:
            kept[f"{key}_ms"] = int(round(float(value) * 1000))
        elif key in DELAYS:
            kept[f"{key}_ms"] = round(max(float(value), 0.0) * 1000, 1)
    return TurnMeta(MappingProxyType(kept), _language(language))


def _finite_number(value: Any) -> bool:
    # livekit's transcription_delay can be the int 0; a bool is never a measurement.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _language(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    return text[:MAX_LANGUAGE_CHARS] or None
