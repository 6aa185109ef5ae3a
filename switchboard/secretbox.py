"""Secrets at rest: sealed with AES-256-GCM under a key derived from the master key.

A sealed value is text, so it fits the columns (and records) that held the
secret before: ``sb1:<key id>:<base64 of nonce + ciphertext>``. The key id
names the master key that sealed it (a hash of its derived key, never the key),
so after the master key changes the previous one can still open what it sealed
while everything is sealed again with the new one (:meth:`SecretBox.is_current`
tells which values are due). A value without the prefix was stored before
secrets were sealed and is read as it is, until it is sealed again.

The key id is also the AES-GCM associated data: a value cannot be passed off as
sealed by another key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from psycopg.types.json import Jsonb
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from switchboard.masterkey import derive_key

__all__ = ["SecretBox", "SealedWithUnknownKey", "is_secret_name", "map_secrets", "reseal_columns"]

logger = logging.getLogger(__name__)

PREFIX = "sb1:"
_PURPOSE = "secrets-at-rest"


# Words that make a config entry a credential (a token, a password, an Authorization or X-Api-Key
# header): its value is sealed at rest and masked where the API shows it.
SECRET_NAME_WORDS = ("token", "secret", "password", "key", "auth", "cookie", "signature")


def is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SECRET_NAME_WORDS)


def map_secrets(config: Mapping[str, Any], change: Callable[[str], Any]) -> dict[str, Any]:
    """``config`` with ``change`` applied to each string under a credential's name, at any depth."""
    def walk(name: str, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: walk(k, v) for k, v in value.items()}
        return change(value) if isinstance(value, str) and is_secret_name(name) else value

    return {k: walk(k, v) for k, v in config.items()}


class SealedWithUnknownKey(RuntimeError):
    """A value sealed with a master key this process was not given (or damaged): configuration, not input."""


class _Key:
    def __init__(self, master_key: str) -> None:
        derived = derive_key(master_key, _PURPOSE)
        self.id = hashlib.sha256(b"key id:" + derived).hexdigest()[:12]
        self.aead = AESGCM(derived)


class SecretBox:
    """Seals with the current master key; opens what it or any previous master key sealed."""

    def __init__(self, master_key: str, previous_master_keys: Iterable[str] = ()) -> None:
        self._current = _Key(master_key)
        self._keys = {key.id: key for key in (_Key(k) for k in previous_master_keys if k)}
        self._keys[self._current.id] = self._current

    @property
    def key_id(self) -> str:
        return self._current.id

    def seal(self, secret: str) -> str:
        nonce = os.urandom(12)
        sealed = self._current.aead.encrypt(nonce, secret.encode(), self._current.id.encode())
        return f"{PREFIX}{self._current.id}:{base64.b64encode(nonce + sealed).decode()}"

    def seal_optional(self, secret: str | None) -> str | None:
        return None if secret is None else self.seal(secret)

    def open(self, stored: str) -> str:
        """The secret in a stored value (sealed, or kept from before secrets were sealed)."""
        if not stored.startswith(PREFIX):
            return stored
        key_id, _, blob = stored[len(PREFIX):].partition(":")
        key = self._keys.get(key_id)
        if key is None:
            raise SealedWithUnknownKey(f"a secret was sealed with master key {key_id}, which this process was "
                                       "not given (SWITCHBOARD_MASTER_KEY, SWITCHBOARD_PREVIOUS_MASTER_KEYS)")
        try:
            raw = base64.b64decode(blob, validate=True)
            return key.aead.decrypt(raw[:12], raw[12:], key_id.encode()).decode()
        except (InvalidTag, ValueError, binascii.Error):
            raise SealedWithUnknownKey(f"a secret sealed with master key {key_id} does not open: "
                                       "it was damaged or altered") from None

    def open_optional(self, stored: str | None) -> str | None:
        return None if stored is None else self.open(stored)

    def seal_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """A destination's config with its credentials sealed (see is_secret_name)."""
        return map_secrets(config, self.seal)

    def open_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return map_secrets(config, self.open)

    def config_is_current(self, config: Mapping[str, Any]) -> bool:
        """Whether every credential in a stored config is sealed with the current master key."""
        due: list[str] = []
        map_secrets(config, lambda value: value if self.is_current(value) else due.append(value))
        return not due

    def is_current(self, stored: str | None) -> bool:
        """Whether a stored value is sealed with the current master key (None: nothing to seal)."""
        return stored is None or stored.startswith(f"{PREFIX}{self._current.id}:")



async def reseal_columns(pool, box: SecretBox, table: str, *, with_config: bool = False, bump: str = "") -> int:
    """Seal again, with the current master key, the ``secret`` and ``previous_secret`` (and, with
    ``with_config``, the credentials in ``config``) of every row of ``table`` (``id`` its key) that
    holds one in the clear or sealed with a previous master key; how many rows changed. A row is
    changed only if it still holds what was read (a change meanwhile stands). ``bump``: more to set on
    a changed row (a revision, so copies elsewhere are rewritten)."""
    columns = ["secret", "previous_secret", *(["config"] if with_config else [])]
    changed = 0
    # Only rows that may be due are read (a config's credentials can sit anywhere: a row with one is read).
    due = "NOT (secret LIKE %(current)s AND (previous_secret IS NULL OR previous_secret LIKE %(current)s))" + (
        " OR config <> '{}'::jsonb" if with_config else "")
    async with pool.connection() as conn:
        cur = await conn.execute(f"SELECT id, {', '.join(columns)} FROM {table} WHERE {due}",
                                 {"current": f"{PREFIX}{box.key_id}:%"})
        for row in await cur.fetchall():
            config = row.get("config")
            if box.is_current(row["secret"]) and box.is_current(row["previous_secret"]) and (
                    config is None or box.config_is_current(config)):
                continue
            new: list[str | Jsonb | None] = [box.seal(box.open(row["secret"])),
                                             box.seal_optional(box.open_optional(row["previous_secret"]))]
            old = [row["secret"], row["previous_secret"]]
            if with_config:
                new.append(Jsonb(box.seal_config(box.open_config(config))))
                old.append(Jsonb(config))
            assignments = ", ".join(f"{column} = %s" for column in columns)
            unchanged = " AND ".join(f"{column} IS NOT DISTINCT FROM %s" for column in columns)
            cur = await conn.execute(f"UPDATE {table} SET {assignments}{bump} WHERE id = %s AND {unchanged}",
                                     (*new, row["id"], *old))
            changed += cur.rowcount
    if changed:
        logger.info("secrets sealed with the current master key", extra={"table": table, "rows": changed})
    return changed
