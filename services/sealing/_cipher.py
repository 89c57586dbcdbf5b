"""Optional encryption of chat content at rest (spool and backups), with key rotation.

Keys are Fernet keys (AES-128-CBC + HMAC-SHA256, from the ``cryptography`` package), given as
a comma-separated list: the first encrypts, all of them decrypt. Rotation: put the new key
first, keep the old ones until ``backups rekey`` (or retention) has rewritten what they sealed.
Sealed text is marked ``enc:v1:`` so plaintext written before encryption was enabled still reads.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from voicelog.services.config import ChatHistorySettings, ConfigError

PREFIX = "enc:v1:"


class ContentKeyError(ValueError):
    """Sealed content could not be opened: no key, or not one of the configured keys."""


class ContentCipher:
    """Seal and open chat content with the configured keys."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ConfigError("content encryption needs at least one key")
        try:
            self._fernet = MultiFernet([Fernet(key.strip().encode()) for key in keys])
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"a content encryption key is not a valid Fernet key: {exc}") from None

    def seal(self, text: str) -> str:
        """Encrypt text for storage."""
        token = self._fernet.encrypt(text.encode("utf-8", "surrogatepass"))
        return PREFIX + token.decode("ascii")

    def open(self, stored: str) -> str:
        """Decrypt stored text; plaintext (never sealed) passes through unchanged."""
        if not is_sealed(stored):
            return stored
        try:
            return self._fernet.decrypt(stored[len(PREFIX):].encode("ascii")).decode("utf-8", "surrogatepass")
        except InvalidToken:
            raise ContentKeyError("content is sealed with a key that is not configured") from None

    def seal_bytes(self, data: bytes) -> bytes:
        """Encrypt binary content (an audio clip) for storage."""
        return PREFIX.encode("ascii") + self._fernet.encrypt(data)

    def open_bytes(self, stored: bytes) -> bytes:
        """Decrypt stored binary content; never-sealed bytes pass through unchanged."""
        if not is_sealed_bytes(stored):
            return stored
        try:
            return self._fernet.decrypt(stored[len(PREFIX):])
        except InvalidToken:
            raise ContentKeyError("content is sealed with a key that is not configured") from None

    def reseal(self, stored: str) -> str:
        """Re-encrypt with the current (first) key; for key rotation."""
        return self.seal(self.open(stored))


def is_sealed(stored: str) -> bool:
    """Whether stored text is encrypted."""
    return stored.startswith(PREFIX)


def is_sealed_bytes(stored: bytes) -> bool:
    """Whether stored binary content (an audio clip) is encrypted."""
    return stored.startswith(PREFIX.encode("ascii"))


def generate_key() -> str:
    """A new random key, for operators setting encryption up."""
    return Fernet.generate_key().decode("ascii")


def cipher_from_settings(settings: ChatHistorySettings,
                         environ: Mapping[str, str] | None = None) -> ContentCipher | None:
    """The cipher the settings ask for, or None when content is stored in plaintext."""
    if not settings.encrypt_content:
        return None
    environ = os.environ if environ is None else environ
    raw = environ.get(settings.encryption_keys_env, "")
    if not raw and settings.encryption_keys_file:
        try:
            raw = Path(settings.encryption_keys_file).read_text(encoding="ascii")
        except OSError as exc:
            raise ConfigError(f"chat_history.encryption_keys_file cannot be read: {exc.strerror}") from None
    keys = [k for k in raw.replace("\n", ",").split(",") if k.strip()]
    if not keys:
        raise ConfigError(f"chat_history.encrypt_content is on but no key was found in "
                          f"${settings.encryption_keys_env} or chat_history.encryption_keys_file")
    return ContentCipher(keys)
