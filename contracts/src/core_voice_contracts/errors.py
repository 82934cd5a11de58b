"""Errors raised by the contracts package."""


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
        super().__init__(f"cannot decode {kind}: {detail}")
        self.kind = kind
        self.detail = detail
