"""Consumer-portal session tokens and frame grants: scoped, expiring, unforgeable."""

from __future__ import annotations

import time

import pytest

from switchboard.errors import InvalidRequest, Unauthenticated
from switchboard.portal_tokens import PortalSession, PortalSigner, check_application_id, check_origins



@pytest.fixture
def session() -> PortalSession:
    """A session of an hour from when the test runs (made at import, it expired in a run of over an hour)."""
    return PortalSession("ten_1", "acme", time.time() + 3600, ("https://app.example.com",))


def test_a_token_carries_its_tenant_application_expiry_and_origins(session: PortalSession) -> None:
    signer = PortalSigner("master")
    token = signer.issue(session)
    assert token.startswith("sbp_")
    assert signer.verify(token) == PortalSession("ten_1", "acme", int(session.expires_at), session.allowed_origins)


def test_every_changed_character_of_a_token_is_refused(session: PortalSession) -> None:
    signer = PortalSigner("master")
    token = signer.issue(session)
    for i in range(4, len(token)):
        changed = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1:]
        with pytest.raises(Unauthenticated):
            signer.verify(changed)


def test_expired_foreign_and_malformed_tokens_are_refused(session: PortalSession) -> None:
    signer = PortalSigner("master")
    with pytest.raises(Unauthenticated, match="expired"):
        signer.verify(signer.issue(session), now=session.expires_at + 1)
    with pytest.raises(Unauthenticated):
        PortalSigner("another deployment").verify(signer.issue(session))
    for bad in ("", "sbp_", "sbp_.", "sb_live_x", "sbp_" + "a" * 5000, "sbp_e30.x"):
        with pytest.raises(Unauthenticated):
            signer.verify(bad)


def test_a_token_from_a_replaced_master_key_verifies_until_it_expires(session: PortalSession) -> None:
    old = PortalSigner("old master").issue(session)
    assert PortalSigner("new master", ("old master",)).verify(old).application_id == "acme"


def test_a_frame_grant_names_its_origins_and_nothing_once_forged_or_expired(session: PortalSession) -> None:
    signer = PortalSigner("master")
    grant = signer.frame_grant(session)
    assert signer.frame_origins(grant) == ("https://app.example.com",)
    assert signer.frame_origins(grant, now=session.expires_at + 1) == ()
    assert signer.frame_origins(grant[:-2] + "xx") == ()
    assert signer.frame_origins(None) == ()
    # A session token is not a frame grant, nor the other way round: each has its own key.
    with pytest.raises(Unauthenticated):
        signer.verify("sbp_" + grant)
    assert signer.frame_origins(signer.issue(session)[4:]) == ()


def test_origins_and_application_ids_are_checked() -> None:
    assert check_origins(["https://App.example.com", "http://localhost:3000"]) == (
        "https://app.example.com", "http://localhost:3000")
    for bad in (["https://app.example.com/path"], ["javascript:alert(1)"], ["*"], ["https://a.com"] * 11):
        with pytest.raises(InvalidRequest):
            check_origins(bad)
    assert check_application_id("customer-42") == "customer-42"
    for bad_id in ("", "-x", "a b", "x" * 65, "../x"):
        with pytest.raises(InvalidRequest):
            check_application_id(bad_id)
