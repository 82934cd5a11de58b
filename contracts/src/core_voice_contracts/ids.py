"""Identifier rules shared by the API, the subjects and the events.

Agent and tenant ids become NATS subject tokens, so they are restricted to characters
that can never be wildcards or separators.
"""

import re

from core_voice_contracts.errors import InvalidIdentifierError

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
_ID_RE = re.compile(ID_PATTERN)


def check_id(value: str, *, what: str = "id") -> str:
    """Return ``value`` if it is a valid id, else raise `InvalidIdentifierError`."""
    if not _ID_RE.fullmatch(value):
        raise InvalidIdentifierError(what, value)
    return value


def is_valid_id(value: str) -> bool:
    return _ID_RE.fullmatch(value) is not None


MAX_TOKEN_CHARS = 200
_TOKEN_RE = re.compile(rf"[\x21-\x7e]{{1,{MAX_TOKEN_CHARS}}}")


def is_token(value: str) -> bool:
    """Printable ASCII, no spaces, at most 200 characters: what an id from outside (a
    LiveKit room sid, a job id) must be to go into a NATS or HTTP header as it is. A CR
    or LF in a header value would end the header (or the whole block) early."""
    return _TOKEN_RE.fullmatch(value) is not None
