"""The deployment's master key, and the purpose-bound keys derived from it.

The master key never leaves the deployment's secrets (SWITCHBOARD_MASTER_KEY,
or ``master.key`` in the state folder, created 0600 on first start). Each use
gets its own derived key, so a key leaked from one use reveals nothing of
another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from switchboard.settings import Settings, SettingsError

__all__ = ["load_or_create_master_key", "require_master_key", "previous_master_keys", "rotate_master_key",
           "derive_key", "secret_box", "service_token", "accepted_service_tokens", "SERVICE_TOKEN_PREFIX"]

FILENAME = "master.key"
# Master keys replaced by `switchboard keys rotate-master`, one a line: they still open the secrets
# they sealed and verify the API keys hashed under them, until those are sealed and hashed again.
PREVIOUS_FILENAME = "master.key.previous"
# The services' credential between themselves (switchboard/rpc_access.py).
SERVICE_TOKEN_PREFIX = "sbsvc_"


def load_or_create_master_key(state_dir: Path) -> str:
    path = state_dir / FILENAME
    if path.exists():
        return path.read_text().strip()
    state_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def require_master_key(settings: Settings) -> str:
    if settings.master_key:
        return settings.master_key
    path = settings.state_dir / FILENAME
    if path.exists():
        return path.read_text().strip()
    raise SettingsError("SWITCHBOARD_MASTER_KEY must be set (or master.key exist in the state folder)")


def previous_master_keys(settings: Settings) -> tuple[str, ...]:
    """SWITCHBOARD_PREVIOUS_MASTER_KEYS, or the keys ``rotate-master`` kept in the state folder."""
    if settings.previous_master_keys:
        return settings.previous_master_keys
    path = settings.state_dir / PREVIOUS_FILENAME
    if not path.exists():
        return ()
    return tuple(line.strip() for line in path.read_text().splitlines() if line.strip())


def rotate_master_key(state_dir: Path) -> None:
    """A new ``master.key`` in the state folder, the old one kept in ``master.key.previous``."""
    current = state_dir / FILENAME
    if not current.exists():
        raise SettingsError(f"there is no {current} to rotate")
    old = current.read_text().strip()
    fd = os.open(state_dir / PREVIOUS_FILENAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as handle:
        handle.write(old + "\n")
    staged = state_dir / (FILENAME + ".new")
    staged.unlink(missing_ok=True)
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48) + "\n")
    os.replace(staged, current)


def derive_key(master_key: str, purpose: str) -> bytes:
    return hmac.new(master_key.encode(), f"switchboard:{purpose}".encode(), hashlib.sha256).digest()


def secret_box(settings: Settings):
    """The box that seals this deployment's secrets at rest (switchboard/secretbox.py)."""
    from switchboard.secretbox import SecretBox  # secretbox derives its key with derive_key, above

    return SecretBox(require_master_key(settings), previous_master_keys(settings))


def _derived_service_token(master_key: str) -> str:
    digest = derive_key(master_key, "grpc-service-token")
    return SERVICE_TOKEN_PREFIX + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def service_token(settings: Settings) -> str:
    """The credential this process presents to the other services' gRPC servers: SWITCHBOARD_SERVICE_TOKEN,
    else derived from the master key (nothing more to distribute)."""
    return settings.service_token or _derived_service_token(require_master_key(settings))


def accepted_service_tokens(settings: Settings) -> tuple[str, ...]:
    """The service tokens this process's servers accept: its own, and those of previous master keys
    (so a rolling master-key rotation does not cut the services apart)."""
    if settings.service_token:
        return (settings.service_token,)
    return (service_token(settings), *(_derived_service_token(key) for key in previous_master_keys(settings)))
