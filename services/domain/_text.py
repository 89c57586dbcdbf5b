"""Make captured text storable without changing what was said.

Outcomes (docs/guarantees.md, "Adversarial input"):
- leading/trailing whitespace is trimmed; a turn with nothing left is skipped and counted;
- a lone surrogate (not encodable as UTF-8) and U+0000 NUL become U+FFFD, so the place where
  something unstorable was stays visible; NUL is never spoken, and C-string tools downstream
  (the sqlite3 shell, MySQL clients, log pipelines) silently cut text at it;
- every other character (controls, RTL marks, combining marks, emoji) is kept exactly;
- a turn longer than MAX_TURN_CHARS is cut there and marked, so one runaway reply cannot
  fill the spool; a 1 MB transcript is far below the cap and is stored exactly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

_UNSTORABLE = re.compile(r"[\ud800-\udfff\x00]")
MAX_TURN_CHARS = 4 * 1024 * 1024
CUT_MARKER = " [cut: {dropped} more characters not stored]"
_CUT_TAIL = re.compile(r" \[cut: \d+ more characters not stored\]")


def clean_transcript(text: object) -> str:
    """Return the text trimmed, with lone surrogates and NUL as U+FFFD, cut at the cap.

    Cleaning cleaned text changes nothing (the handlers clean, then the service cleans again).
    """
    if text is None:
        return ""
    if not isinstance(text, str):
        text = str(text)
    if _UNSTORABLE.search(text):
        text = _storable(text)
    cleaned = text.strip()
    if len(cleaned) > MAX_TURN_CHARS and not _CUT_TAIL.fullmatch(cleaned, MAX_TURN_CHARS):
        dropped = len(cleaned) - MAX_TURN_CHARS
        cleaned = cleaned[:MAX_TURN_CHARS] + CUT_MARKER.format(dropped=dropped)
    return cleaned


def is_cut(cleaned: str) -> bool:
    """Whether clean_transcript cut this text at the cap (only cut text is longer than it)."""
    return len(cleaned) > MAX_TURN_CHARS


def _storable(text: str) -> str:
    # A high+low surrogate pair split into two code points is still one character: rejoin it
    # through UTF-16; only what is truly lone becomes U+FFFD.
    joined = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return joined.replace("\x00", "\ufffd")


def join_segments(segments: list[str]) -> str:
    """Join final STT segments of one turn the way the framework joins them: single spaces."""
    return " ".join(s for s in (seg.strip() for seg in segments) if s)


class SecretMask:
    """Replace known secrets in text by ``***``: whole values, never letters of other words.

    A secret is masked where it stands as a value: not glued to a letter, digit or ``_`` on a
    side where the secret itself ends in one (so the secret ``S`` masks ``Bearer S`` and
    ``"secret": "S"`` but not the S of ``SIGTERM``). Its JSON-escaped spelling is masked too.
    """

    MASK = "***"

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        spellings = {s for secret in secrets if secret for s in (secret, _json_escaped(secret))}
        # Longest first, so a secret that contains another is masked whole.
        patterns = [_as_value(s) for s in sorted(spellings, key=len, reverse=True)]
        self._pattern = re.compile("|".join(patterns)) if patterns else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def apply(self, text: str) -> str:
        """``text`` with every secret that stands as a value replaced by ``***``."""
        return self._pattern.sub(self.MASK, text) if self._pattern is not None else text


def _as_value(secret: str) -> str:
    before = r"(?<!\w)" if re.match(r"\w", secret[0]) else ""
    after = r"(?!\w)" if re.match(r"\w", secret[-1]) else ""
    return before + re.escape(secret) + after


def _json_escaped(secret: str) -> str:
    return json.dumps(secret, ensure_ascii=False)[1:-1]
