"""Make captured text storable without changing what was said."""

from __future__ import annotations

import re

_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def clean_transcript(text: object) -> str:
    """Return the text trimmed, with lone surrogates (not encodable as UTF-8) as U+FFFD."""
    if text is None:
        return ""
    if not isinstance(text, str):
        text = str(text)
    return _LONE_SURROGATE.sub("\ufffd", text).strip()


def join_segments(segments: list[str]) -> str:
    """Join final STT segments of one turn the way the framework joins them: single spaces."""
    return " ".join(s for s in (seg.strip() for seg in segments) if s)
