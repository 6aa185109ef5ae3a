"""The nats destination against a real NATS server."""

import asyncio

from tests.outbound_fixture import outbound_client
import nats
import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from plugins.destinations.nats_subject import RESERVED_FIRST_TOKENS, NatsSubjectDestination
from plugins.destinations.spec import DestinationContext, EndpointTarget, InvalidEndpointConfig, OutboundMessage
from switchboard.messaging import stream_specs
from switchboard.settings import Settings
from switchboard.signatures import generate_webhook_secret

destination = NatsSubjectDestination()
MESSAGE = OutboundMessage(delivery_id="evt_1:ep_1", event_id="evt_1", tenant_id="ten_1", event_type="commande.créée",
                          payload={"order": 42, "items": ["ü"]}, attempt=2)


async def publish(nc, target: EndpointTarget, message: OutboundMessage = MESSAGE, timeout_s: float = 5.0):
    async with outbound_client() as http:
        context = DestinationContext(http=http, timeout_s=timeout_s, allow_private_networks=False, nats=nc)
        return await destination.send(message, target, context)


def standard_headers(headers: dict[str, str]) -> dict[str, str]:
    return {name: headers[name] for name in ("webhook-id", "webhook-timestamp", "webhook-signature")}


async def test_a_subscriber_gets_the_payload_signed_per_standard_webhooks(nats_server) -> None:
    secret = generate_webhook_secret()
    nc = await nats.connect(nats_server.url)
    try:
        subscription = await nc.subscribe("orders.created")
        result = await publish(nc, EndpointTarget("nats:orders.created", secret))
        got = await subscription.next_msg(timeout=5)
    finally:
        await nc.close()
    assert result.ok and result.error is None
    assert got.subject == "orders.created" and got.headers is not None
    assert got.data == orjson.dumps(MESSAGE.payload)
    assert got.headers["webhook-id"] == got.headers["Nats-Msg-Id"] == MESSAGE.delivery_id
    assert got.headers["x-switchboard-event-id"] == "evt_1"
    assert got.headers["x-switchboard-event-type"] == "commande.cr%C3%A9%C3%A9e"
    assert got.headers["x-switchboard-attempt"] == "2"
    assert Webhook(secret).verify(got.data, standard_headers(got.headers)) == MESSAGE.payload
    with pytest.raises(Exception):
        Webhook(generate_webhook_secret()).verify(got.data, standard_headers(got.headers))


async def test_the_original_body_is_sent_when_kept_and_both_secrets_sign_during_rotation(nats_server) -> None:
    old, new = generate_webhook_secret(), generate_webhook_secret()
    message = OutboundMessage(delivery_id="d2", event_id="e2", tenant_id="t", event_type="a.b", payload={"a": 1},
                              attempt=1, body=b'{"a": 1}')
    nc = await nats.connect(nats_server.url)
    try:
        subscription = await nc.subscribe("team.billing.events")
        result = await publish(nc, EndpointTarget("nats:team.billing.events", new, previous_secret=old), message)
        got = await subscription.next_msg(timeout=5)
    finally:
        await nc.close()
    assert result.ok and got.data == b'{"a": 1}' and got.headers is not None
    assert len(got.headers["webhook-signature"].split()) == 2
    for secret in (old, new):
        assert Webhook(secret).verify(got.data, standard_headers(got.headers)) == {"a": 1}


async def test_a_jetstream_stream_on_the_subject_dedupes_retries(nats_server, js) -> None:
    await js.add_stream(name="ORDERS", subjects=["orders.>"])
    nc = await nats.connect(nats_server.url)
    try:
        for _ in range(2):  # a retry of the same delivery
            assert (await publish(nc, EndpointTarget("nats:orders.created", generate_webhook_secret()))).ok
        await asyncio.sleep(0.1)
    finally:
        await nc.close()
    assert (await js.stream_info("ORDERS")).state.messages == 1


async def test_without_a_nats_connection_the_send_fails_for_good() -> None:
    result = await publish(None, EndpointTarget("nats:orders.created", generate_webhook_secret()))
    assert not result.ok and not result.retryable and result.error == "NATS not available to destinations"


async def test_a_closed_connection_is_retried(nats_server) -> None:
    nc = await nats.connect(nats_server.url)
    await nc.close()
    result = await publish(nc, EndpointTarget("nats:orders.created", generate_webhook_secret()))
    assert not result.ok and result.retryable and "ConnectionClosedError" in result.error


async def test_a_message_over_the_servers_limit_fails_for_good(nats_server) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        big = OutboundMessage(delivery_id="d", event_id="e", tenant_id="t", event_type="a", payload=None,
                              attempt=1, body=b"x" * (nc.max_payload + 1))
        result = await publish(nc, EndpointTarget("nats:orders.created", generate_webhook_secret()), big)
    finally:
        await nc.close()
    assert not result.ok and not result.retryable and "payload limit" in result.error


@pytest.mark.parametrize("url,complaint", [
    ("orders.created", "nats:<subject>"),
    ("https://example.com/orders", "nats:<subject>"),
    ("nats:", "must name a subject"),
    ("nats:orders created", "without spaces"),
    ("nats:orders.\ncreated", "printable"),
    ("nats:orders.*", "wildcards"),
    ("nats:orders.>", "wildcards"),
    ("nats:orders..created", "non-empty tokens"),
    ("nats:.orders", "non-empty tokens"),
    ("nats:orders.", "non-empty tokens"),
    ("nats:commandes.créées", "ASCII"),
    ("nats:" + "a" * 300, "longer than"),
    ("nats:events.ten_1.src_1", "reserved"),
    ("nats:deliveries.ten_1.ep_1", "reserved"),
    ("nats:$JS.API.STREAM.LIST", "reserved"),
    ("nats:_INBOX.abc", "reserved"),
])
def test_invalid_subjects_are_rejected_at_creation(url: str, complaint: str) -> None:
    with pytest.raises(InvalidEndpointConfig, match=complaint):
        destination.validate(EndpointTarget(url, generate_webhook_secret()))


@pytest.mark.parametrize("config,secret,complaint", [
    ({"subject": "orders.created"}, None, "unknown config keys"),
    ([], None, "must be an object"),
    ({}, "not-a-whsec-secret", "whsec"),
])
def test_invalid_config_and_secrets_are_rejected(config, secret: str | None, complaint: str) -> None:
    with pytest.raises(InvalidEndpointConfig, match=complaint):
        destination.validate(EndpointTarget("nats:orders.created", secret or generate_webhook_secret(), config))


def test_every_platform_stream_subject_is_reserved() -> None:
    for spec in stream_specs(Settings.from_env({})):
        for subject in spec.subjects:
            assert subject.split(".")[0] in RESERVED_FIRST_TOKENS


@pytest.mark.parametrize("url", ["nats:orders.created", "nats:team-a.billing_v2.Invoice=paid", "nats:x"])
def test_valid_subjects_are_accepted(url: str) -> None:
    destination.validate(EndpointTarget(url, generate_webhook_secret()))


async def test_a_v1a_endpoint_with_svix_header_names_publishes_ed25519_signatures(nats_server) -> None:
    from tests.plugins.test_webhook_destination import v1a_verifies
    from switchboard.signatures import generate_signing_key, public_key_of

    old, new = generate_signing_key(), generate_signing_key()
    nc = await nats.connect(nats_server.url)
    try:
        subscription = await nc.subscribe("team.signed")
        target = EndpointTarget("nats:team.signed", new, {"header_names": "svix"}, previous_secret=old)
        result = await publish(nc, target)
        got = await subscription.next_msg(timeout=5)
    finally:
        await nc.close()
    assert result.ok and got.headers is not None
    assert got.headers["svix-id"] == got.headers["Nats-Msg-Id"] == MESSAGE.delivery_id
    assert "webhook-signature" not in got.headers
    assert v1a_verifies(public_key_of(new), dict(got.headers), got.data, prefix="svix") == [True, False]
    assert v1a_verifies(public_key_of(old), dict(got.headers), got.data, prefix="svix") == [False, True]


@pytest.mark.parametrize("config,secret,field", [
    ({"header_names": "stripe"}, None, "config.header_names"),
    ({}, "whsk_short", "secret"),
])
def test_bad_header_names_and_keys_are_refused_naming_the_field(config: dict, secret: str | None,
                                                                 field: str) -> None:
    with pytest.raises(InvalidEndpointConfig) as refused:
        destination.validate(EndpointTarget("nats:orders.created", secret or generate_webhook_secret(), config))
    assert refused.value.field == field
