"""Endpoint management: what may be created or changed, checked before it is stored.

Every change is validated as a whole (the endpoint as it would be after the
change): the destination checks its URL and config, delivery options are
checked, event-type patterns are checked, a failover must be another live
endpoint of the same tenant, and an HTTP URL must not reach a private network.

The signature scheme is the secret's: a ``whsec_`` secret signs ``v1``, a
``whsk_`` key ``v1a`` (switchboard/signatures.py), so it is stored nowhere else
and can never disagree with the key that signs.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, UTC
from typing import Any
from collections.abc import Mapping

from plugins.destinations.spec import EndpointTarget, InvalidEndpointConfig
from plugins.manager import PluginRegistry, UnknownPlugin
from services.delivery.options import validate_options
from services.delivery.endpoint_store import Endpoint, EndpointStore
from switchboard.secretbox import map_secrets
from switchboard.errors import InvalidRequest, NotFound
from switchboard.netguard import DestinationRefused, HostUnresolvable, Networks, ensure_public_destination
from switchboard.patterns import check_type_patterns
from switchboard.portal_tokens import check_application_id
from switchboard.signatures import (
    SIGNATURE_SCHEMES,
    SIGNING_KEY_PREFIX,
    check_signing_secret,
    generate_signing_secret,
    signature_scheme_of,
)

__all__ = ["EndpointManager", "masked_config", "MAX_GRACE"]

MAX_GRACE = timedelta(days=30)


def masked_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config as shown through the API: credentials reduced to their last four characters."""
    return map_secrets(config, lambda value: "…" + value[-4:] if len(value) > 8 else "…")


def _secret_for(secret: str, signature_scheme: str, default_scheme: str) -> str:
    """The secret given (which must be of ``signature_scheme`` when both are given), else a new one."""
    if signature_scheme and signature_scheme not in SIGNATURE_SCHEMES:
        raise InvalidRequest(f"signature_scheme is one of {', '.join(SIGNATURE_SCHEMES)}", field="signature_scheme")
    if not secret:
        return generate_signing_secret(signature_scheme or default_scheme)
    if signature_scheme and signature_scheme_of(secret) != signature_scheme:
        kind = "a whsk_ key" if signature_scheme == "v1a" else "a whsec_ secret"
        raise InvalidRequest(f"a {signature_scheme} endpoint's secret is {kind}", field="secret")
    return secret


class EndpointManager:
    def __init__(self, store: EndpointStore, registry: PluginRegistry, allow_private_destinations: bool,
                 allowed_networks: Networks = ()) -> None:
        self.store = store
        self.registry = registry
        self.allow_private_destinations = allow_private_destinations
        self.allowed_networks = allowed_networks

    async def create(
        self, tenant_id: str, url: str, description: str, destination: str, secret: str,
        config: Mapping[str, Any], options: Mapping[str, Any], event_types: list[str],
        failover_endpoint_id: str | None, signature_scheme: str = "", application_id: str | None = None,
    ) -> Endpoint:
        secret = _secret_for(secret, signature_scheme, default_scheme="v1")
        if application_id is not None:
            check_application_id(application_id)
        draft = Endpoint(
            id="", tenant_id=tenant_id, url=url, description=description, destination=destination or "webhook",
            secret=secret, config=dict(config), created_at=datetime.now(UTC), options=dict(options),
            event_types=list(event_types), failover_endpoint_id=failover_endpoint_id or None,
        )
        checked = await self._checked(draft)
        return await self.store.create(
            tenant_id, checked.url, checked.description, checked.destination, checked.secret, checked.config,
            checked.options, checked.event_types, checked.failover_endpoint_id, application_id,
        )

    async def update(self, tenant_id: str, endpoint_id: str, changes: dict[str, Any],
                     enabled: bool | None = None) -> Endpoint:
        current = await self.store.get(tenant_id, endpoint_id)
        if "failover_endpoint_id" in changes:
            changes["failover_endpoint_id"] = changes["failover_endpoint_id"] or None
        checked = await self._checked(replace(current, **changes))
        endpoint = current
        if changes:
            endpoint = await self.store.update(
                tenant_id, endpoint_id, {k: getattr(checked, k) for k in changes})
        if enabled is not None and enabled == (endpoint.disabled_at is not None):
            endpoint = await self.store.set_disabled(
                tenant_id, endpoint_id, None if enabled else "disabled by an operator")
        return endpoint

    async def rotate_secret(self, tenant_id: str, endpoint_id: str, secret: str, grace: timedelta,
                            signature_scheme: str = "") -> Endpoint:
        """A new secret (of ``signature_scheme``, else of the current one's); the old one signs beside it."""
        if not timedelta(0) <= grace <= MAX_GRACE:
            raise InvalidRequest(f"grace_seconds is between 0 and {int(MAX_GRACE.total_seconds())}",
                                 field="grace_seconds")
        current = await self.store.get(tenant_id, endpoint_id)
        new = _secret_for(secret, signature_scheme, default_scheme=signature_scheme_of(current.secret))
        if new == current.secret:
            raise InvalidRequest("the new secret must differ from the current one", field="secret")
        await self._checked(replace(current, secret=new))
        return await self.store.rotate_secret(tenant_id, endpoint_id, new, grace)

    async def _checked(self, endpoint: Endpoint) -> Endpoint:
        """The endpoint with its options and patterns normalised; InvalidRequest or NotFound otherwise."""
        try:
            destination = self.registry.destination(endpoint.destination)
        except UnknownPlugin as exc:
            raise InvalidRequest(str(exc), field="destination") from None
        if not isinstance(endpoint.config, Mapping):
            raise InvalidRequest("config must be a JSON object", field="config")
        if endpoint.secret.startswith(SIGNING_KEY_PREFIX):
            # Whatever the destination: its public key is derived for every listing.
            try:
                check_signing_secret(endpoint.secret)
            except ValueError as exc:
                raise InvalidEndpointConfig(str(exc), field="secret") from None
        destination.validate(EndpointTarget(url=endpoint.url, secret=endpoint.secret, config=endpoint.config))
        endpoint = replace(endpoint, options=validate_options(endpoint.options),
                           event_types=check_type_patterns(endpoint.event_types))
        if endpoint.failover_endpoint_id:
            if endpoint.failover_endpoint_id == endpoint.id:
                raise InvalidRequest("an endpoint cannot be its own failover", field="failover_endpoint_id")
            try:
                failover = await self.store.get(endpoint.tenant_id, endpoint.failover_endpoint_id)
            except NotFound:
                raise InvalidRequest(f"failover endpoint {endpoint.failover_endpoint_id} not found",
                                     field="failover_endpoint_id") from None
            if failover.failover_endpoint_id:
                raise InvalidRequest("a failover endpoint cannot have a failover of its own",
                                     field="failover_endpoint_id")
        if endpoint.url.startswith(("http://", "https://")):
            # Refused now, and again at every send (DNS can change in between).
            try:
                await ensure_public_destination(endpoint.url, self.allow_private_destinations, self.allowed_networks)
            except HostUnresolvable as exc:
                # Said plainly: a typo or a missing DNS record, not a refusal of where it points.
                raise InvalidRequest(f"url: {exc}", field="url") from None
            except DestinationRefused as exc:
                raise InvalidRequest(f"url refused: {exc}", field="url") from None
        return endpoint
