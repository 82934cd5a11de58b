"""Errors raised by the contracts package."""

import msgspec

DECODE_FAILURES: tuple[type[Exception], ...] = (
    msgspec.DecodeError,
    RecursionError,
    UnicodeError,
)
"""What a msgspec decoder raises for bad input: its own `msgspec.DecodeError` (a wrong
type, malformed JSON), and, not subclasses of it, `RecursionError` for JSON nested too
deep to parse, `UnicodeDecodeError` for invalid UTF-8 in a tag or union string and
`UnicodeEncodeError` for text (a str, such as room metadata) holding a lone surrogate."""

MAX_DETAIL_CHARS = 200


class ContractError(Exception):
    """Base class: something does not satisfy a Core Voice contract."""

    retryable = False


class InvalidIdentifierError(ContractError, ValueError):
    """An agent/tenant id that cannot be used as a subject token."""

    def __init__(self, what: str, value: str) -> None:
        shown = value if len(value) <= 80 else value[:77] + "..."
        super().__init__(f"invalid {what} {shown!r}: use 1-64 of [A-Za-z0-9_-], starting alnum")
        self.what = what
        self.value = value


class DecodeError(ContractError, ValueError):
    """A message on the bus that is not a valid contract message."""

    def __init__(self, kind: str, detail: str) -> None:
        # msgspec quotes the offending value ("Invalid value 'xxx...'"): a 1 MiB tag
        # must not become a 1 MiB log line or reply.
        if len(detail) > MAX_DETAIL_CHARS:
            detail = detail[: MAX_DETAIL_CHARS - 3] + "..."
        super().__init__(f"cannot decode {kind}: {detail}")
        self.kind = kind
        self.detail = detail

    @classmethod
    def of(cls, kind: str, exc: Exception) -> "DecodeError":
        """The `DecodeError` for one of `DECODE_FAILURES` raised decoding a ``kind``."""
        if isinstance(exc, RecursionError):
            return cls(kind, "nested too deep")
        if isinstance(exc, UnicodeError):
            return cls(kind, "invalid UTF-8")
        return cls(kind, str(exc))
