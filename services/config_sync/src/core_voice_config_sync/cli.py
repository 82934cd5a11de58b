"""Operator commands: ``python -m core_voice_config_sync <command>``.

They talk to the database directly (same ``CONFIG_SYNC_DATABASE_URL`` and master keys as
the service) and are safe while the service runs:

    serve                         run the service (the default)
    migrate                       bring the schema up to date and exit
    tenant create ID [--name N]   create a tenant and print its first admin token
    token create --scope S --name N (--tenant ID | --all-tenants)
                                  mint a token; --all-tenants only for scope runtime
    keys generate                 print a new master key (base64, 32 bytes)
    keys reencrypt [--batch N]    re-seal every provider key under the active master key;
                                  lists the versions it cannot open (exit 1 if any)

Tokens are printed once, on stdout, as JSON; nothing else goes to stdout.
"""

import argparse
import asyncio
import json
import sys

from core_voice_config_sync.agent_repository import AgentRepository
from core_voice_config_sync.crypto import generate_key
from core_voice_config_sync.db import Database, create_engine, migrate
from core_voice_config_sync.errors import ConfigSyncError, KeysUnavailableError, SettingsError
from core_voice_config_sync.sealed_keys import SealedKeyRepository
from core_voice_config_sync.settings import StoreSettings, load_store_settings
from core_voice_config_sync.tokens import TokenRepository
from core_voice_contracts.admin_api import TokenScope
from core_voice_contracts.ids import is_valid_id

REENCRYPT_BATCH = 100


def _out(data: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


async def _database(settings: StoreSettings) -> Database:
    engine = create_engine(settings.database_url)
    await migrate(engine)
    return Database(engine)


async def _migrate(settings: StoreSettings, _: argparse.Namespace) -> None:
    db = await _database(settings)
    await db.engine.dispose()
    _out({"migrated": True})


async def _tenant_create(settings: StoreSettings, args: argparse.Namespace) -> None:
    if not is_valid_id(args.id):
        raise SettingsError("tenant id: use 1-64 of [A-Za-z0-9_-], starting alnum")
    db = await _database(settings)
    try:
        created = await AgentRepository(db).ensure_tenant(args.id, args.name)
        token, record = await TokenRepository(db).create(
            tenant_id=args.id, name=args.token_name, scope=TokenScope.ADMIN
        )
    finally:
        await db.engine.dispose()
    _out({"tenant_id": args.id, "created": created, "token_id": record.id, "token": token})


async def _token_create(settings: StoreSettings, args: argparse.Namespace) -> None:
    db = await _database(settings)
    try:
        token, record = await TokenRepository(db).create(
            tenant_id=None if args.all_tenants else args.tenant,
            name=args.name,
            scope=TokenScope(args.scope),
        )
    finally:
        await db.engine.dispose()
    _out({"tenant_id": record.tenant_id, "token_id": record.id, "token": token})


async def _keys_generate(_: StoreSettings, __: argparse.Namespace) -> None:
    _out({"key": generate_key()})


async def _keys_reencrypt(settings: StoreSettings, args: argparse.Namespace) -> None:
    """Online: each version is re-sealed in its own short transaction, only if it still
    holds what was read; the plaintext keys never change, so nothing is announced.

    Gets through every row: one that cannot be opened (a master key not in the ring,
    bytes that do not open) is listed by agent, version and key id, and the run pages on
    past it. Exits 1 if any was listed (they stay under their old key: keep it), 0 otherwise.
    """
    keyring = settings.keyring()
    if keyring is None:
        raise SettingsError("CONFIG_SYNC_ENCRYPTION_KEYS (or _FILE) is required")
    db = await _database(settings)
    repository = SealedKeyRepository(db)
    done = moved = 0
    unreadable: list[dict[str, object]] = []
    after: tuple[str, int] | None = None
    try:
        while batch := await repository.sealed_not_under(
            keyring.active_id, args.batch, after=after
        ):
            for agent_id, version, sealed in batch:
                after = (agent_id, version)
                try:
                    fresh = keyring.reseal(sealed, agent_id=agent_id)
                except Exception as exc:  # one bad row never stops the run
                    unreadable.append(
                        {
                            "agent_id": agent_id,
                            "version": version,
                            "key_id": sealed.key_id,
                            "reason": _unreadable_reason(keyring.ids, sealed.key_id, exc),
                        }
                    )
                    continue
                if await repository.replace_sealed(agent_id, version, sealed, fresh):
                    done += 1
                else:
                    moved += 1  # re-sealed by someone else meanwhile
        remaining = await repository.sealed_key_ids()
    finally:
        await db.engine.dispose()
    _out(
        {
            "active_key_id": keyring.active_id,
            "resealed": done,
            "changed_meanwhile": moved,
            "unreadable": len(unreadable),
            "unreadable_versions": unreadable,
            "versions_by_key_id": remaining,
        }
    )
    if unreadable:
        raise ReencryptIncompleteError(len(unreadable))


def _unreadable_reason(ring_ids: frozenset[str], key_id: str, exc: Exception) -> str:
    """Why a version could not be opened, naming no key material."""
    if key_id not in ring_ids:
        return "master key not in the key ring"
    if isinstance(exc, KeysUnavailableError):
        return "does not open with its master key (corrupted, or sealed for another agent)"
    return f"cannot be opened ({type(exc).__name__})"


class ReencryptIncompleteError(ConfigSyncError):
    code = "reencrypt_incomplete"

    def __init__(self, count: int) -> None:
        super().__init__(
            f"{count} version(s) could not be opened and stay under their old master key; "
            "see unreadable_versions"
        )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


COMMANDS = {
    "migrate": _migrate,
    "tenant create": _tenant_create,
    "token create": _token_create,
    "keys generate": _keys_generate,
    "keys reencrypt": _keys_reencrypt,
}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m core_voice_config_sync", description=__doc__)
    sub = top.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the service (default)")
    sub.add_parser("migrate", help="bring the schema up to date")

    tenant = sub.add_parser("tenant").add_subparsers(dest="action", required=True)
    create = tenant.add_parser("create", help="create a tenant and its first admin token")
    create.add_argument("id")
    create.add_argument("--name")
    create.add_argument("--token-name", default="bootstrap admin")

    token = sub.add_parser("token").add_subparsers(dest="action", required=True)
    mint = token.add_parser("create", help="mint a token")
    mint.add_argument("--scope", required=True, choices=[s.value for s in TokenScope])
    mint.add_argument("--name", required=True)
    owner = mint.add_mutually_exclusive_group(required=True)
    owner.add_argument("--tenant")
    owner.add_argument("--all-tenants", action="store_true")

    keys = sub.add_parser("keys").add_subparsers(dest="action", required=True)
    keys.add_parser("generate", help="print a new master key")
    reencrypt = keys.add_parser(
        "reencrypt", help="re-seal provider keys under the active master key"
    )
    reencrypt.add_argument(
        "--batch", type=_positive, default=REENCRYPT_BATCH, help="versions read per page"
    )
    return top


def run_command(argv: list[str]) -> int:
    """Run an admin command; 0 on success, 2 on bad settings or input, 1 on failure."""
    args = parser().parse_args(argv)
    name = " ".join(p for p in (args.command, getattr(args, "action", None)) if p)
    try:
        settings = load_store_settings()
        asyncio.run(COMMANDS[name](settings, args))
    except SettingsError as exc:
        sys.stderr.write(f"error: {exc.detail}\n")
        return 2
    except ConfigSyncError as exc:
        sys.stderr.write(f"error: {exc.code}: {exc.detail}\n")
        return 1
    return 0
