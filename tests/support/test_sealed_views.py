"""What support staff read of encrypted content: opened with the key, marked (never raw tokens) without it."""

from __future__ import annotations

from voicelog.services.domain import ChatType, SessionRecord, Turn, TurnStatus
from voicelog.services.sealing import ContentCipher, generate_key
from voicelog.services.support import SessionView

KEY, OTHER_KEY = generate_key(), generate_key()


def view_of(*contents: str) -> SessionView:
    session = SessionRecord("s1", "68:25:dd:ba:39:78", True, "attribute", 1, 2, "user_initiated", None, None, 0, 0)
    turns = tuple(Turn("s1", i, ChatType.USER, text, i, i, False, TurnStatus.DELIVERED)
                  for i, text in enumerate(contents, start=1))
    return SessionView(session, {"delivered": len(turns)}, "spool", None, turns)


def test_sealed_turns_open_with_the_key_and_are_marked_without_one_or_with_another():
    """One sealed turn beside a plain one: the key opens it; no key or a foreign key marks it in words."""
    sealed = ContentCipher([KEY]).seal("my name is Mia")
    view = view_of(sealed, "plain words")
    assert [t.content for t in view.opened(ContentCipher([KEY])).turns] == ["my name is Mia", "plain words"]
    assert [t.content for t in view.opened(None).turns] == ["[encrypted: no key configured]", "plain words"]
    assert [t.content for t in view.opened(ContentCipher([OTHER_KEY])).turns] == [
        "[encrypted: none of the configured keys opens it]", "plain words"]
    plain = view_of("nothing sealed")
    assert plain.opened(None) is plain
