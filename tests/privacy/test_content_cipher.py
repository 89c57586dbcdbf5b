"""Content encryption seals text at rest, reads old plaintext, and supports key rotation."""

import pytest

from voicelog.services.config import ChatHistorySettings, ConfigError
from voicelog.services.sealing import (
    ContentCipher,
    ContentKeyError,
    cipher_from_settings,
    generate_key,
    is_sealed,
)

TEXT = "my secret 🤫 是 e\u0301 \x00 end"


def test_sealed_text_hides_the_words_and_opens_back_exactly():
    """A sealed turn contains none of its words and opens to the identical string."""
    cipher = ContentCipher([generate_key()])
    sealed = cipher.seal(TEXT)
    assert is_sealed(sealed) and "secret" not in sealed
    assert cipher.open(sealed) == TEXT


def test_rotation_keeps_old_content_readable_and_reseals_with_the_new_key():
    """With the new key first and the old one kept, old content opens and reseals to the new key."""
    old, new = generate_key(), generate_key()
    sealed_old = ContentCipher([old]).seal(TEXT)
    rotated = ContentCipher([new, old])
    resealed = rotated.reseal(sealed_old)
    assert rotated.open(sealed_old) == TEXT
    assert ContentCipher([new]).open(resealed) == TEXT


def test_a_wrong_key_is_a_clear_error_not_garbage():
    """Opening with keys that did not seal the content says so."""
    with pytest.raises(ContentKeyError, match="not configured"):
        ContentCipher([generate_key()]).open(ContentCipher([generate_key()]).seal(TEXT))


def test_plaintext_from_before_encryption_passes_through():
    """Turns stored before encryption was switched on still read."""
    assert ContentCipher([generate_key()]).open("plain words") == "plain words"


def test_settings_without_a_key_fail_at_start_naming_the_variable():
    """encrypt_content with no key is a configuration error, not silent plaintext."""
    with pytest.raises(ConfigError, match="VOICELOG_CONTENT_KEYS"):
        cipher_from_settings(ChatHistorySettings(encrypt_content=True), environ={})
    assert cipher_from_settings(ChatHistorySettings(), environ={}) is None
    key = generate_key()
    cipher = cipher_from_settings(ChatHistorySettings(encrypt_content=True),
                                  environ={"VOICELOG_CONTENT_KEYS": f"{key}, "})
    assert cipher is not None and cipher.open(cipher.seal("x")) == "x"
