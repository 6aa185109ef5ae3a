"""The deployment's master key, and the purpose-bound keys derived from it.

The master key never leaves the deployment's secrets (SWITCHBOARD_MASTER_KEY,
or ``master.key`` in the state folder, created 0600 on first start). Each use
gets its own derived key, so a key leaked from one use reveals nothing of
another.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from switchboard.settings import Settings, SettingsError

__all__ = ["load_or_create_master_key", "require_master_key", "derive_key"]

FILENAME = "master.key"


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


def derive_key(master_key: str, purpose: str) -> bytes:
    return hmac.new(master_key.encode(), f"switchboard:{purpose}".encode(), hashlib.sha256).digest()
