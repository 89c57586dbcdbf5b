"""Optional encryption of chat content at rest, with key rotation (Fernet keys)."""

from voicelog.services._face import lazy_face

__all__, __getattr__, __dir__ = lazy_face(__name__, {
    "_cipher": ("ContentCipher", "ContentKeyError", "PREFIX", "cipher_from_settings", "generate_key",
                "is_sealed", "is_sealed_bytes"),
})
