"""Provider keys at rest: AES-256-GCM under named master keys (envelope-free, one key
ring per deployment).

The ring is ``id:base64key`` entries (32-byte keys), comma-separated, from
``CONFIG_SYNC_ENCRYPTION_KEYS`` or a mounted secret file. The first entry seals; every
entry opens. Each sealed blob records its key id, so rotation is: put the new key first
(keeping the old one after it) on every replica, run ``reencrypt``, then drop the old key.
No step needs downtime, and the sealed bytes are bound to their agent (associated data),
so a blob copied onto another agent's row does not open.

    >>> ring = KeyRing.parse("k1:" + generate_key())
    >>> sealed = ring.seal({"openai": "sk-secret"}, agent_id="a1")
    >>> ring.open(sealed, agent_id="a1")
    {'openai': 'sk-secret'}
"""

import base64
import binascii
import os
import secrets
from dataclasses import dataclass

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core_voice_config_sync.errors import KeysUnavailableError, SettingsError

KEY_BYTES = 32
NONCE_BYTES = 12
_KEY_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_keys_decoder = msgspec.json.Decoder(dict[str, str])


def generate_key() -> str:
    """A fresh master key, base64 (``python -m core_voice_config_sync gen-key``)."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


@dataclass(frozen=True, slots=True)
class Sealed:
    """Keys as stored: which master key sealed them, nonce ‖ ciphertext ‖ tag."""

    key_id: str
    blob: bytes

    def __repr__(self) -> str:
        return f"Sealed(key_id={self.key_id!r}, <{len(self.blob)} bytes>)"


def _aad(agent_id: str) -> bytes:
    return f"core-voice/agent-keys/{agent_id}".encode()


class KeyRing:
    """Named AES-GCM keys; never shows them in a repr."""

    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise SettingsError("the key ring is empty")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys}
        self.active_id = keys[0][0]

    def __repr__(self) -> str:
        return f"KeyRing(active={self.active_id!r}, ids={sorted(self._ciphers)!r})"

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(self._ciphers)

    @classmethod
    def parse(cls, text: str) -> "KeyRing":
        """``id:base64key[,id:base64key...]``; errors name the entry, never the key."""
        entries: list[tuple[str, bytes]] = []
        for n, raw in enumerate(part.strip() for part in text.split(",")):
            if not raw:
                continue
            key_id, sep, encoded = raw.partition(":")
            if not sep or not key_id or not set(key_id) <= _KEY_ID_CHARS or len(key_id) > 64:
                raise SettingsError(f"encryption key entry {n + 1}: expected id:base64key")
            try:
                key = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise SettingsError(f"encryption key {key_id!r}: not base64") from None
            if len(key) != KEY_BYTES:
                raise SettingsError(f"encryption key {key_id!r}: must be {KEY_BYTES} bytes")
            if any(key_id == seen for seen, _ in entries):
                raise SettingsError(f"encryption key {key_id!r}: listed twice")
            entries.append((key_id, key))
        return cls(entries)

    def seal(self, keys: dict[str, str], *, agent_id: str) -> Sealed:
        nonce = os.urandom(NONCE_BYTES)
        data = msgspec.json.encode(keys)
        blob = nonce + self._ciphers[self.active_id].encrypt(nonce, data, _aad(agent_id))
        return Sealed(key_id=self.active_id, blob=blob)

    def open(self, sealed: Sealed, *, agent_id: str) -> dict[str, str]:
        cipher = self._ciphers.get(sealed.key_id)
        if cipher is None:
            raise KeysUnavailableError(
                f"provider keys are sealed with master key {sealed.key_id!r}, "
                "which is not in the key ring"
            )
        nonce, body = sealed.blob[:NONCE_BYTES], sealed.blob[NONCE_BYTES:]
        try:
            data = cipher.decrypt(nonce, body, _aad(agent_id))
        except InvalidTag:
            raise KeysUnavailableError(
                f"provider keys of agent {agent_id!r} do not open with {sealed.key_id!r}"
            ) from None
        return _keys_decoder.decode(data)

    def reseal(self, sealed: Sealed, *, agent_id: str) -> Sealed:
        """The same keys under the active master key (a no-op if already so)."""
        if sealed.key_id == self.active_id:
            return sealed
        return self.seal(self.open(sealed, agent_id=agent_id), agent_id=agent_id)
