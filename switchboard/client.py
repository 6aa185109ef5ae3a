"""The Python client of Switchboard: every RPC as a typed method, sync or async, over gRPC or REST.

    from switchboard.client import Client

    with Client(api_key="sb_live_...", host="switchboard.internal") as sb:
        endpoint = sb.create_endpoint(url="https://example.com/hooks").endpoint
        sb.publish_event(type="order.created", payload_json='{"id": 1}', idempotency_key="order-1")
        for delivery in sb.iter_deliveries(endpoint_id=endpoint.id):
            print(delivery.status)

Each method is named after its RPC (``CreateEndpoint`` -> ``create_endpoint``)
and takes the request message or its fields as keywords (a dict for a
``Struct`` or a typed message, a ``datetime`` for a ``Timestamp``); it returns
the response message. The methods are generated from the ``.proto`` files
(``switchboard/v1/client_methods.py``), so every RPC is there.

* **Transports**: gRPC by default; with ``rest_url="https://switchboard.example.com"``
  the same methods call the REST API (each RPC's ``google.api.http``
  binding, switchboard/transcoding.py), for callers that reach only the
  edge. Answers are the same messages either way; RPCs without a REST
  binding (tenants, API keys) are gRPC only.
* **Credentials**: an API key (its scopes and tenant, as on REST; leave
  ``tenant_id`` empty) or the deployment's service token.
* **Errors** are the platform's exceptions (:mod:`switchboard.errors`) with the
  stable ``code``, the ``field`` at fault and a rate limit's ``retry_after_s``.
* **Retries**: ``UNAVAILABLE`` is retried with exponential backoff and jitter
  (``retries`` times, 3 by default) for every call that is safe to repeat:
  reads, updates, deletes, and an event published with an ``idempotency_key``.
  A call that creates something (a source, an endpoint, a key, a replay, a
  retry...) is not, since the first attempt may have done it. A rate limit
  (``RESOURCE_EXHAUSTED`` with a retry delay) is retried after that delay for
  every call: nothing was done.
* **Pages**: ``iter_deliveries``, ``iter_events``, ``iter_replies`` and
  ``iter_audit`` follow the pages for you.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import datetime
from typing import Any, Protocol, cast
from collections.abc import AsyncIterator, Iterator, Mapping

import grpc
import httpx
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.protobuf.timestamp_pb2 import Timestamp

from switchboard.errors import InvalidRequest, RateLimited, SwitchboardError, Unavailable, from_rest_error
from switchboard.protojson import to_message
from switchboard.rpc import error_from_status
from switchboard.settings import DEFAULT_GRPC_PORTS
from switchboard.transcoding import Binding, binding_for, from_rest_answer, rest_request
from switchboard.v1.client_methods import AsyncClientMethods, ClientMethods

__all__ = ["Client", "AsyncClient", "build_request", "retry_safe"]

# Methods whose repetition does nothing more than the first call did (PublishEvent: with an idempotency key).
_NOT_RETRIED_PREFIXES = ("Create", "Rotate", "Retry", "Test", "Save", "Record", "Approve", "Reject", "Cancel")


def retry_safe(path: str, request: Message) -> bool:
    """Whether an UNAVAILABLE call may be sent again."""
    method = path.rsplit("/", 1)[-1]
    if method == "PublishEvent":
        return bool(getattr(request, "idempotency_key", ""))
    return not method.startswith(_NOT_RETRIED_PREFIXES)


def build_request(request_type: type[Message], request: Message | None, fields: Mapping[str, Any]) -> Message:
    """The request: given, or made from keyword fields (a message field may be given as its JSON form, a dict
    or list, and a Timestamp as a datetime)."""
    if request is not None:
        if fields:
            raise TypeError("give the request message or its fields, not both")
        return request
    message = request_type()
    # Typed Descriptor or upb's Descriptor, which at runtime is a Descriptor (isinstance holds).
    descriptor = cast(Descriptor, request_type.DESCRIPTOR)
    for name, value in fields.items():
        field = descriptor.fields_by_name.get(name)
        if field is None:
            raise TypeError(f"{descriptor.name} has no field {name!r}")
        kind = field.message_type
        if kind is None:
            if field.is_repeated:
                getattr(message, name).extend(value)
            else:
                setattr(message, name, value)
        elif kind.GetOptions().map_entry:
            getattr(message, name).update(value)
        elif field.is_repeated:
            getattr(message, name).extend(_as_message(v, GetMessageClass(kind)) for v in value)
        else:
            getattr(message, name).CopyFrom(_as_message(value, GetMessageClass(kind)))
    return message


def _as_message(value: Any, message_type: type[Message]) -> Message:
    if isinstance(value, Message):
        return value
    if isinstance(value, datetime) and message_type is Timestamp:
        stamp = Timestamp()
        stamp.FromDatetime(value)
        return stamp
    return to_message(value, message_type)


def _delay(error: SwitchboardError, attempt: int, backoff_s: float) -> float:
    if isinstance(error, RateLimited):
        return error.retry_after_s
    return backoff_s * (2 ** attempt) * (0.5 + random.random())


def _retried(error: SwitchboardError, safe: bool) -> bool:
    return isinstance(error, RateLimited) or (safe and isinstance(error, Unavailable))


def _following(page: Any, found: list[Any], after: str) -> Any:
    """What asks for the next page: the page's cursor, or the last id shown (None: this was the last)."""
    if after == "cursor":
        return page.next_cursor or None
    return found[-1].id if found else None


def _rest_parts(path: str, message: Message) -> tuple[Binding, str, dict[str, str], dict[str, Any] | None]:
    binding = binding_for(path)
    if binding is None:
        raise InvalidRequest(f"{path.rsplit('/', 1)[-1]} has no REST binding: call it over gRPC")
    return (binding, *rest_request(binding, message))


def _rest_answer(answer: httpx.Response, response_type: Any) -> Any:
    """The answer as its message, or the platform error it carries."""
    if answer.status_code < 400:
        return from_rest_answer(answer.json(), response_type())
    try:
        body = answer.json()
    except ValueError:
        body = None
    retry_after = answer.headers.get("retry-after")
    raise from_rest_error(answer.status_code, body, float(retry_after) if retry_after else None,
                          dict(answer.headers))


def _targets(host: str, targets: Mapping[str, str] | None) -> dict[str, str]:
    return {service: (targets or {}).get(service) or f"{host}:{port}" for service, port in DEFAULT_GRPC_PORTS.items()}


class _Client(Protocol):
    """What the methods of :class:`_Base` take from Client and AsyncClient (and their generated methods)."""

    def _channel(self, service: str) -> Any: ...
    def _pages(self, method: Any, items: str, after: str, filters: dict[str, Any]) -> Any: ...
    def list_deliveries(self, request: Any = None, /, **fields: Any) -> Any: ...
    def list_events(self, request: Any = None, /, **fields: Any) -> Any: ...
    def list_replies(self, request: Any = None, /, **fields: Any) -> Any: ...
    def list_audit(self, request: Any = None, /, **fields: Any) -> Any: ...


class _Base:
    def __init__(self, api_key: str, host: str, targets: Mapping[str, str] | None, timeout_s: float, retries: int,
                 backoff_s: float, credentials: grpc.ChannelCredentials | None) -> None:
        if not api_key:
            raise ValueError("an API key (or the service token) is required")
        self._metadata = (("authorization", f"Bearer {api_key}"),)
        self._headers = {"authorization": f"Bearer {api_key}"}
        self._targets = _targets(host, targets)
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        # TLS (grpc.ssl_channel_credentials()) when the gRPC ports are behind a TLS proxy or mesh.
        self._credentials = credentials
        self._channels: dict[str, Any] = {}

    def _rpc(self: _Client, service: str, path: str, request_type: Any, response_type: Any) -> Any:
        """The call's method on its service's channel."""
        return self._channel(service).unary_unary(path, request_serializer=request_type.SerializeToString,
                                                  response_deserializer=response_type.FromString)

    # Pages, followed (an iterator, or an async one for AsyncClient).
    def iter_deliveries(self: _Client, **filters: Any) -> Any:
        """Every delivery the filters select, newest first, page after page."""
        return self._pages(self.list_deliveries, "deliveries", "cursor", filters)

    def iter_events(self: _Client, **filters: Any) -> Any:
        """Every event summary the filters select, newest first, page after page."""
        return self._pages(self.list_events, "events", "cursor", filters)

    def iter_replies(self: _Client, **filters: Any) -> Any:
        """Every AI-drafted reply the filters select, newest first."""
        return self._pages(self.list_replies, "replies", "before", filters)

    def iter_audit(self: _Client, **filters: Any) -> Any:
        """The audit log, newest first."""
        return self._pages(self.list_audit, "entries", "before_id", filters)


class Client(_Base, ClientMethods):
    """A blocking client over gRPC; see the module docstring.

    ``host``: where the services listen on their default ports (50051...);
    ``targets``: ``host:port`` per service (``{"delivery": "delivery:50054"}``) where they differ.
    """

    def __init__(self, api_key: str, *, host: str = "127.0.0.1", targets: Mapping[str, str] | None = None,
                 timeout_s: float = 10.0, retries: int = 3, backoff_s: float = 0.2,
                 credentials: grpc.ChannelCredentials | None = None, rest_url: str | None = None) -> None:
        super().__init__(api_key, host, targets, timeout_s, retries, backoff_s, credentials)
        self._http = httpx.Client(base_url=rest_url, headers=self._headers, timeout=timeout_s) if rest_url else None

    def _channel(self, service: str) -> grpc.Channel:
        if service not in self._channels:
            target = self._targets[service]
            self._channels[service] = grpc.secure_channel(target, self._credentials) if self._credentials \
                else grpc.insecure_channel(target)
        return self._channels[service]

    def _call(self, service: str, path: str, request_type: Any, response_type: Any, request: Any,
              fields: dict[str, Any]) -> Any:
        message = build_request(request_type, request, fields)
        safe = retry_safe(path, message)
        for attempt in range(self.retries + 1):
            try:
                if self._http is not None:
                    return self._over_rest(path, response_type, message)
                return self._over_grpc(service, path, request_type, response_type, message)
            except SwitchboardError as error:
                if attempt == self.retries or not _retried(error, safe):
                    raise
                time.sleep(_delay(error, attempt, self.backoff_s))
        raise AssertionError("unreachable")

    def _over_grpc(self, service: str, path: str, request_type: Any, response_type: Any, message: Message) -> Any:
        try:
            return self._rpc(service, path, request_type, response_type)(
                message, metadata=self._metadata, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise error_from_status(exc.code(), exc.details(), exc.trailing_metadata()) from None

    def _over_rest(self, path: str, response_type: Any, message: Message) -> Any:
        assert self._http is not None
        binding, url, query, body = _rest_parts(path, message)
        try:
            answer = self._http.request(binding.verb, url, params=query, json=body)
        except httpx.TransportError:
            raise Unavailable("the edge is unavailable; retry later") from None
        return _rest_answer(answer, response_type)

    @staticmethod
    def _pages(method: Any, items: str, after: str, filters: dict[str, Any]) -> Iterator[Any]:
        while True:
            page = method(**filters)
            found = list(getattr(page, items))
            yield from found
            following = _following(page, found, after)
            if following is None:
                return
            filters = {**filters, after: following}

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        if self._http is not None:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Base, AsyncClientMethods):
    """The same client for asyncio (grpc.aio); use it inside one event loop."""

    def __init__(self, api_key: str, *, host: str = "127.0.0.1", targets: Mapping[str, str] | None = None,
                 timeout_s: float = 10.0, retries: int = 3, backoff_s: float = 0.2,
                 credentials: grpc.ChannelCredentials | None = None, rest_url: str | None = None) -> None:
        super().__init__(api_key, host, targets, timeout_s, retries, backoff_s, credentials)
        self._http = httpx.AsyncClient(base_url=rest_url, headers=self._headers, timeout=timeout_s) \
            if rest_url else None

    def _channel(self, service: str) -> grpc.aio.Channel:
        if service not in self._channels:
            target = self._targets[service]
            self._channels[service] = grpc.aio.secure_channel(target, self._credentials) if self._credentials \
                else grpc.aio.insecure_channel(target)
        return self._channels[service]

    async def _call(self, service: str, path: str, request_type: Any, response_type: Any, request: Any,
                    fields: dict[str, Any]) -> Any:
        message = build_request(request_type, request, fields)
        safe = retry_safe(path, message)
        for attempt in range(self.retries + 1):
            try:
                if self._http is not None:
                    return await self._over_rest(path, response_type, message)
                return await self._over_grpc(service, path, request_type, response_type, message)
            except SwitchboardError as error:
                if attempt == self.retries or not _retried(error, safe):
                    raise
                await asyncio.sleep(_delay(error, attempt, self.backoff_s))
        raise AssertionError("unreachable")

    async def _over_grpc(self, service: str, path: str, request_type: Any, response_type: Any,
                         message: Message) -> Any:
        try:
            return await self._rpc(service, path, request_type, response_type)(
                message, metadata=self._metadata, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise error_from_status(exc.code(), exc.details(), exc.trailing_metadata()) from None

    async def _over_rest(self, path: str, response_type: Any, message: Message) -> Any:
        assert self._http is not None
        binding, url, query, body = _rest_parts(path, message)
        try:
            answer = await self._http.request(binding.verb, url, params=query, json=body)
        except httpx.TransportError:
            raise Unavailable("the edge is unavailable; retry later") from None
        return _rest_answer(answer, response_type)

    @staticmethod
    async def _pages(method: Any, items: str, after: str, filters: dict[str, Any]) -> AsyncIterator[Any]:
        while True:
            page = await method(**filters)
            found = list(getattr(page, items))
            for item in found:
                yield item
            following = _following(page, found, after)
            if following is None:
                return
            filters = {**filters, after: following}

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        if self._http is not None:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
