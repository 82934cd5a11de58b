"""The token cache: a stored token is served from memory for a short while, and through a
database outage only until ``max_stale_s`` after the database last vouched for it."""

import dataclasses
import datetime as dt

import pytest
from pydantic import SecretStr

from core_voice_config_sync.auth import StaticTokens, StoredTokens, hash_token, new_token
from core_voice_config_sync.errors import DatabaseUnavailableError
from core_voice_config_sync.records import TokenRecord
from tests.fakes.clock import Clock

pytestmark = pytest.mark.unit


class Tokens:
    """``api_tokens`` as the authenticator reads it; ``down`` makes every read fail."""

    def __init__(self) -> None:
        self.rows: dict[str, TokenRecord] = {}
        self.down = False
        self.reads = 0

    async def by_hash(self, digest: str) -> TokenRecord | None:
        self.reads += 1
        if self.down:
            raise DatabaseUnavailableError
        return self.rows.get(digest)


def authenticator(tokens: Tokens, clock: Clock, max_stale_s: float) -> StoredTokens:
    static = StaticTokens(
        admin=SecretStr("a" * 32), runtime=SecretStr("r" * 32), default_tenant="default"
    )
    return StoredTokens(static, tokens.by_hash, max_stale_s=max_stale_s, clock=clock)


def stored(tokens: Tokens) -> str:
    token = new_token()
    tokens.rows[hash_token(token)] = TokenRecord(
        id="tok-1",
        tenant_id="acme",
        name="ci",
        scope="admin",
        last4=token[-4:],
        created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )
    return token


def revoke(tokens: Tokens, token: str) -> None:
    digest = hash_token(token)
    tokens.rows[digest] = dataclasses.replace(tokens.rows[digest], revoked=True)


async def test_a_token_known_before_an_outage_is_refused_once_too_stale() -> None:
    tokens, clock = Tokens(), Clock()
    auth = authenticator(tokens, clock, max_stale_s=45)
    token = stored(tokens)
    assert (await auth.authenticate(token)) is not None
    revoke(tokens, token)  # revoked through another replica...
    tokens.down = True  # ...then the database went away: this replica cannot tell
    clock.now += 45
    assert (await auth.authenticate(token)) is not None  # a short outage is ridden out
    clock.now += 0.1
    with pytest.raises(DatabaseUnavailableError):
        await auth.authenticate(token)
    tokens.down = False
    assert (await auth.authenticate(token)) is None  # the database's answer: revoked


async def test_a_fresh_entry_is_never_older_than_max_stale() -> None:
    """With a cap below the usual cache time, a cached answer is re-checked at the cap."""
    tokens, clock = Tokens(), Clock()
    auth = authenticator(tokens, clock, max_stale_s=2)
    token = stored(tokens)
    assert (await auth.authenticate(token)) is not None
    clock.now += 1.9
    assert (await auth.authenticate(token)) is not None
    assert tokens.reads == 1
    revoke(tokens, token)
    clock.now += 0.2
    assert (await auth.authenticate(token)) is None
    assert tokens.reads == 2


async def test_bootstrap_tokens_need_no_database() -> None:
    tokens, clock = Tokens(), Clock()
    tokens.down = True
    auth = authenticator(tokens, clock, max_stale_s=1)
    principal = await auth.authenticate("r" * 32)
    assert principal is not None and principal.name == "runtime"
    assert tokens.reads == 0
