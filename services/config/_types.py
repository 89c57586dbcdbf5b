"""The kinds of value a setting holds, each with the one check that every key of its kind shares.

A key's own limits (``gt=0``, ``ge=0``) sit beside its declaration in ``_model``; what is checked
here is what the kind itself demands: a number that is not a bool or a string, a flag that is
really true or false, a URL with a scheme and a host. Every message says what is allowed, in the
words ``ConfigError`` shows, and none repeats a secret.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlparse

from pydantic import AfterValidator, BeforeValidator, GetCoreSchemaHandler, GetJsonSchemaHandler, Strict
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema


class ConfigError(ValueError):
    """One or more configuration values are missing, unknown or not allowed.

    The message holds one line per problem, each naming the key (``section.key``) or the
    environment variable it came from; ``problems`` holds the same lines as a tuple.
    """

    def __init__(self, *problems: str) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Secret:
    """A string that never shows itself in repr, str or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the real value, for the one place that must send it."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    @classmethod
    def from_setting(cls, value: Any) -> Secret:
        """A Secret from a configured value; the refusal never repeats the value."""
        if isinstance(value, Secret):
            return value
        if value is None or (isinstance(value, (str, int, float)) and not isinstance(value, bool)):
            return cls("" if value is None else str(value))
        raise ValueError("must be a string")

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        # Dumped as itself in Python and as its mask in JSON, so no dump ever carries the value.
        return core_schema.no_info_plain_validator_function(
            cls.from_setting,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda secret, info: secret if info.mode == "python" else "***" if secret else "",
                info_arg=True))

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {"type": "string", "format": "password", "writeOnly": True}


class _Verbatim:
    """Marks a key whose environment value is taken as written, not read as a YAML scalar."""

    def __repr__(self) -> str:
        return "VERBATIM"


VERBATIM = _Verbatim()


class _FilePath:
    """Marks a key holding a file or folder path: a relative one is resolved when settings load."""

    def __repr__(self) -> str:
        return "FILE_PATH"


FILE_PATH = _FilePath()
# Shorter than this, a value is no secret (guessable) and cannot be told apart from ordinary
# words when logs are masked: "S" would mask the S of every "SIGTERM".
SECRET_MIN_CHARS = 8


def is_file_path(metadata: list[Any]) -> bool:
    """Whether a key (its metadata) holds a path that is resolved against the config file's folder."""
    return any(item is FILE_PATH for item in metadata)


def short_secret(secret: Secret) -> bool:
    """Whether a set secret is too short to be one (an empty secret means "not set")."""
    return bool(secret) and len(secret.reveal()) < SECRET_MIN_CHARS


def _long_enough(secret: Secret) -> Secret:
    # The refusal says how long a secret must be, never how long (or what) this one is.
    if short_secret(secret):
        raise ValueError(f"is shorter than {SECRET_MIN_CHARS} characters: too short to be a secret, "
                         "and too short to be masked in logs without hiding ordinary words")
    return secret


def is_verbatim(annotation: Any, metadata: list[Any]) -> bool:
    """Whether a key (its annotation and metadata) takes environment values as written."""
    return annotation is Secret or any(item is VERBATIM for item in metadata)


def _number(value: Any) -> Any:
    # pydantic would read "5" or true as numbers; a config file that says so is a mistake.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be a number, got {value!r}")
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ValueError(f"must be a string, got {value!r}")
    return str(value)


def _url(value: Any) -> str:
    text = _text(value).rstrip("/")
    if text and (urlparse(text).scheme not in ("http", "https") or not urlparse(text).netloc):
        raise ValueError("must be an http(s) URL with the context path, e.g. http://host:8002/xiaozhi")
    return text


def _listen(value: Any) -> str:
    text = _text(value)
    if text and (":" not in text or not text.rsplit(":", 1)[1].isdigit()):
        raise ValueError("must be HOST:PORT, or empty to disable")
    return text


def _mac_list(value: Any) -> tuple[str, ...]:
    from voicelog.services.domain import normalise_mac

    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise ValueError("must be a list of MAC addresses")
    macs = []
    for item in value:
        mac = normalise_mac(str(item))
        if mac is None:
            raise ValueError(f"{item!r} is not a MAC address")
        macs.append(mac)
    return tuple(macs)


Whole = Annotated[int, BeforeValidator(_number)]
Number = Annotated[float, BeforeValidator(_number)]
Flag = Annotated[bool, Strict()]
Text = Annotated[str, BeforeValidator(_text)]
FilePath = Annotated[str, BeforeValidator(_text), FILE_PATH]
StrongSecret = Annotated[Secret, AfterValidator(_long_enough)]
VerbatimText = Annotated[str, BeforeValidator(_text), VERBATIM]
Url = Annotated[str, BeforeValidator(_url), VERBATIM]
Listen = Annotated[str, BeforeValidator(_listen)]
MacList = Annotated[tuple[str, ...], BeforeValidator(_mac_list)]
