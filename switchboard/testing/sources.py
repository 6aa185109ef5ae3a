"""The contract every source type keeps, as tests a plugin's test module inherits.

Subclass :class:`SourceContract` in a test module (a class named ``Test...``),
name the source type and give a sample body and its secret; pytest runs every
``test_`` method below on it::

    class TestAcmeSource(SourceContract):
        source_type = "acme"
        secret = "acme-signing-secret"
        sample = b'{"event": "order.created", "id": "evt_1"}'
        signature_header = "x-acme-signature"
        timestamp_tolerance_s = 300  # None when the provider signs no timestamp
        event_type = "order.created"

Requests are signed with the source's own ``sign`` unless the class overrides
:meth:`SourceContract.sign` (with the provider's SDK, say: the stronger test,
as the built-ins' contract tests do). The source is looked up the way the
services look it up: every built-in and every installed entry point.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from plugins.sources.spec import (
    AUTHORS,
    InboundRequest,
    MalformedRequest,
    NormalizedEvent,
    SignatureInvalid,
    UnsupportedContentType,
)
from switchboard.testing.registry import installed_registry

__all__ = ["SourceContract", "body_positions", "changed_signature"]

# What "refused" means for a tampered request: 401, or 400/415 when the change breaks a body the signature
# covers parsed (a form). Any other exception is a bug in the source, and the test errors with it.
_REFUSALS = (SignatureInvalid, MalformedRequest, UnsupportedContentType)


def body_positions(length: int, most: int = 128) -> list[int]:
    """Every byte position of a short body; of a longer one the first, the last and ``most`` others
    spread evenly with a few drawn at random (seeded by the length, so a failure repeats)."""
    if length <= most:
        return list(range(length))
    spread = {round(i * (length - 1) / (most - 1)) for i in range(most - 8)}
    drawn = set(random.Random(length).sample(range(length), 8))
    return sorted(spread | drawn | {0, length - 1})


def changed_signature(value: str) -> str:
    """``value`` with one character near its middle changed to another of its kind (digit, lower- or
    upper-case letter), so the result still looks like a signature but is not the right one."""
    middle = len(value) // 2
    for index in sorted(range(len(value)), key=lambda i: abs(i - middle)):
        char = value[index]
        for alphabet in ("0123456789", "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"):
            if char in alphabet:
                other = alphabet[(alphabet.index(char) + 1) % len(alphabet)]
                return value[:index] + other + value[index + 1:]
    return value + "0"


class SourceContract:
    """What every source type must do; see the module docstring for how to use it."""

    #: The ``type`` the source registers, e.g. "acme".
    source_type: ClassVar[str]
    #: A secret of the kind the provider issues.
    secret: ClassVar[str]
    #: A realistic webhook body, as the provider sends it.
    sample: ClassVar[bytes]
    #: The header carrying the signature (lower-case).
    signature_header: ClassVar[str]
    content_type: ClassVar[str] = "application/json"
    #: The source's config, as given when creating a source (validated first).
    config: ClassVar[Mapping[str, Any]] = {}
    #: Seconds a signed timestamp may be off; None when the provider signs no timestamp.
    timestamp_tolerance_s: ClassVar[float | None] = None
    #: What normalizing the sample must give, when the test knows (None: any non-empty string).
    event_type: ClassVar[str | None] = None
    provider_event_id: ClassVar[str | None] = None
    #: The URL the sender posts to (sources that sign the URL, such as Twilio's, sign this one).
    url: ClassVar[str] = "https://hooks.example.com/in/src_0123456789abcdef0123456789abcdef"

    # --- what a subclass may override ---------------------------------------------------------

    def source(self) -> Any:
        """The source type under test, as the services find it."""
        return installed_registry().source(self.source_type)

    def sign(self, body: bytes, secret: str) -> dict[str, str]:
        """The headers a genuine sender sends with ``body``; by default the source's own ``sign``."""
        source = self.source()
        if not hasattr(source, "sign"):
            pytest.fail(f"the {self.source_type} source has no sign(); override {type(self).__name__}.sign "
                        "to sign as the provider does")
        return dict(source.sign(body, secret, self.validated_config(), self.url))

    def other_secret(self) -> str:
        """A secret of the right kind that is not :attr:`secret`."""
        source = self.source()
        if hasattr(source, "generate_secret"):
            return str(source.generate_secret())
        return "not-" + self.secret

    # --- helpers ------------------------------------------------------------------------------

    def validated_config(self) -> dict[str, Any]:
        return dict(self.source().validate_config(dict(self.config)))

    def request(self, body: bytes, headers: Mapping[str, str], received_at: float | None = None) -> InboundRequest:
        """The request as the edge hands it over: lower-case header names, the time it arrived."""
        headers = {"content-type": self.content_type, **{name.lower(): value for name, value in headers.items()}}
        return InboundRequest("POST", "/in/src_0123456789abcdef0123456789abcdef", headers, body,
                              received_at=time.time() if received_at is None else received_at, url=self.url)

    def verifies(self, request: InboundRequest) -> bool:
        """Whether the source accepts the request; False when it refuses it as it should."""
        try:
            self.source().verify(request, self.secret, self.validated_config())
        except _REFUSALS:
            return False
        return True

    # --- the contract ---------------------------------------------------------------------------

    def test_a_genuinely_signed_request_verifies(self) -> None:
        request = self.request(self.sample, self.sign(self.sample, self.secret))
        self.source().verify(request, self.secret, self.validated_config())
        source = self.source()
        if hasattr(source, "sign"):  # what `switchboard send-sample` sends must verify too
            own = self.request(self.sample, source.sign(self.sample, self.secret, self.validated_config(), self.url))
            source.verify(own, self.secret, self.validated_config())

    def test_no_single_byte_change_of_the_body_verifies(self) -> None:
        headers = self.sign(self.sample, self.secret)
        accepted = []
        for index in body_positions(len(self.sample)):
            changed = bytearray(self.sample)
            changed[index] ^= 0x01
            if self.verifies(self.request(bytes(changed), headers)):
                accepted.append(index)
        assert not accepted, f"{self.source_type}: bodies with the byte at {accepted} changed still verify"

    def test_a_missing_or_changed_signature_is_refused(self) -> None:
        headers = {name.lower(): value for name, value in self.sign(self.sample, self.secret).items()}
        header = self.signature_header.lower()
        assert header in headers, f"signing made no {header} header, only {sorted(headers)}"
        genuine = headers[header]
        other = {name.lower(): value for name, value in self.sign(self.sample, self.other_secret()).items()}
        attempts = {
            "missing": {name: value for name, value in headers.items() if name != header},
            "empty": {**headers, header: ""},
            "one character changed": {**headers, header: changed_signature(genuine)},
            "garbled": {**headers, header: "garbled"},
            "signed with another secret": other,
        }
        for what, attempt in attempts.items():
            with pytest.raises(SignatureInvalid):
                self.source().verify(self.request(self.sample, attempt), self.secret, self.validated_config())
                pytest.fail(f"{self.source_type}: a request whose {header} is {what} verified")

    def test_a_stale_or_future_timestamp_is_refused(self) -> None:
        tolerance = self.timestamp_tolerance_s
        if tolerance is None:
            pytest.skip(f"the {self.source_type} source signs no timestamp (timestamp_tolerance_s is None)")
        signed_at = time.time()
        headers = self.sign(self.sample, self.secret)
        for late in (tolerance + 60, -(tolerance + 60), 86_400):
            with pytest.raises(SignatureInvalid):
                self.source().verify(self.request(self.sample, headers, received_at=signed_at + late), self.secret,
                                     self.validated_config())
                pytest.fail(f"{self.source_type}: a request received {late:+g}s from its signing time verified")
        within = self.request(self.sample, headers, received_at=signed_at + tolerance - 30)
        self.source().verify(within, self.secret, self.validated_config())

    def test_the_event_is_normalized(self) -> None:
        source, config = self.source(), self.validated_config()
        request = self.request(self.sample, self.sign(self.sample, self.secret))
        source.verify(request, self.secret, config)
        event = source.normalize(request, config)
        assert isinstance(event, NormalizedEvent), f"normalize returned {event!r}, not a NormalizedEvent"
        assert isinstance(event.type, str) and event.type.strip(), f"event type {event.type!r}"
        if self.event_type is not None:
            assert event.type == self.event_type
        assert event.provider_event_id is None or (isinstance(event.provider_event_id, str)
                                                   and event.provider_event_id), event.provider_event_id
        if self.provider_event_id is not None:
            assert event.provider_event_id == self.provider_event_id
        json.dumps(event.payload)  # stored as JSON: it must be JSON
        assert event.payload is not None
        assert event.body is None or isinstance(event.body, bytes)
        assert event.occurred_at is None or (isinstance(event.occurred_at, (int, float))
                                             and math.isfinite(event.occurred_at)), event.occurred_at
        assert event.author is None or event.author in AUTHORS, event.author
        assert event.conversation_key is None or (isinstance(event.conversation_key, str)
                                                  and event.conversation_key), event.conversation_key
        # A retry of the same delivery must normalize the same, or it would not collapse into one event.
        assert source.normalize(request, config) == event
