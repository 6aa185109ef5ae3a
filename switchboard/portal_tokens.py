"""Consumer-portal sessions: short-lived tokens scoped to one application of one tenant.

A tenant's customer (an "application": the endpoints one customer of the
tenant owns) manages its own endpoints in the portal the edge serves. The
tenant mints a session with its admin key (``POST /v1/portal/sessions``,
AuthService) and hands the customer the URL; nothing is stored: the token is
the session, ``sbp_<payload>.<mac>``, its payload the tenant, the
application, the expiry and the origins that may frame the portal, its MAC an
HMAC-SHA256 under a key derived from the master key for this purpose alone
(a token from a rotated-out master key still verifies until it expires, as
API keys do). A session therefore cannot be revoked before it expires: they
last at most 24 hours, 1 hour by default.

The portal page is served before any token is seen (the token is in the URL's
fragment, which browsers never send), so what may frame it travels apart: a
*frame grant* in the page's query, the same origins and expiry under another
derived key. It grants nothing but the ``frame-ancestors`` of that one page.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from dataclasses import dataclass

import orjson

from switchboard.errors import InvalidRequest, Unauthenticated
from switchboard.masterkey import derive_key

__all__ = ["PortalSession", "PortalSigner", "TOKEN_PREFIX", "MAX_TTL_S", "DEFAULT_TTL_S", "check_origins",
           "check_application_id"]

TOKEN_PREFIX = "sbp_"
DEFAULT_TTL_S = 3600
MAX_TTL_S = 86_400
MAX_ORIGINS = 10
# An origin exactly as browsers send it: scheme, host and an optional port; no path.
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?$")
# What a tenant calls its customer: its own id for it.
_APPLICATION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


def check_application_id(value: str, field: str = "application_id") -> str:
    if not _APPLICATION.match(value):
        raise InvalidRequest(f"{field}: 1 to 64 letters, digits, '_', '.', ':' or '-', starting with a letter "
                             "or digit", field=field)
    return value


def check_origins(origins: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    if len(origins) > MAX_ORIGINS:
        raise InvalidRequest(f"allowed_origins: at most {MAX_ORIGINS}", field="allowed_origins")
    for origin in origins:
        if not _ORIGIN.match(origin):
            raise InvalidRequest(f"allowed_origins: {origin!r} is not an origin like https://app.example.com",
                                 field="allowed_origins")
    return tuple(dict.fromkeys(o.lower() for o in origins))


@dataclass(frozen=True)
class PortalSession:
    tenant_id: str
    application_id: str
    expires_at: float  # Unix seconds
    # Origins that may show the portal in a frame; empty: none may.
    allowed_origins: tuple[str, ...] = ()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PortalSigner:
    """Issues and verifies session tokens and frame grants (the master key and those it replaced)."""

    def __init__(self, master_key: str, previous_master_keys: tuple[str, ...] = ()) -> None:
        keys = (master_key, *previous_master_keys)
        self._session_keys = [derive_key(k, "portal-session") for k in keys]
        self._frame_keys = [derive_key(k, "portal-frame") for k in keys]

    def issue(self, session: PortalSession) -> str:
        payload = _b64(orjson.dumps({"t": session.tenant_id, "a": session.application_id,
                                     "e": int(session.expires_at), "o": list(session.allowed_origins)}))
        return f"{TOKEN_PREFIX}{payload}.{self._mac(self._session_keys[0], payload)}"

    def verify(self, token: str, now: float | None = None) -> PortalSession:
        """The session, or Unauthenticated (malformed, forged or expired)."""
        refused = Unauthenticated("not a valid portal session; ask for a new link")
        body = token[len(TOKEN_PREFIX):] if token.startswith(TOKEN_PREFIX) else None
        data = self._opened(body, self._session_keys) if body is not None and len(token) <= 4096 else None
        if data is None:
            raise refused
        try:
            session = PortalSession(str(data["t"]), str(data["a"]), float(data["e"]), tuple(data["o"]))
        except (KeyError, TypeError, ValueError):
            raise refused from None
        if session.expires_at <= (time.time() if now is None else now):
            raise Unauthenticated("this portal session has expired; ask for a new link")
        return session

    def frame_grant(self, session: PortalSession) -> str:
        payload = _b64(orjson.dumps({"o": list(session.allowed_origins), "e": int(session.expires_at)}))
        return f"{payload}.{self._mac(self._frame_keys[0], payload)}"

    def frame_origins(self, grant: str | None, now: float | None = None) -> tuple[str, ...]:
        """The origins a valid, unexpired grant names; none otherwise (the page then refuses every frame)."""
        data = self._opened(grant, self._frame_keys) if grant and len(grant) <= 4096 else None
        if data is None or not isinstance(data.get("o"), list):
            return ()
        if float(data.get("e", 0)) <= (time.time() if now is None else now):
            return ()
        try:
            return check_origins([str(o) for o in data["o"]])
        except InvalidRequest:
            return ()

    @staticmethod
    def _mac(key: bytes, payload: str) -> str:
        return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())

    def _opened(self, signed: str, keys: list[bytes]) -> dict | None:
        payload, _, mac = signed.partition(".")
        if not payload or not mac:
            return None
        if not any(hmac.compare_digest(mac, self._mac(key, payload)) for key in keys):
            return None
        try:
            data = orjson.loads(_unb64(payload))
        except (ValueError, orjson.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None
