"""Who may call which RPC: one server interceptor for every service, and the services' own credential.

Every RPC needs ``authorization: Bearer <credential>`` metadata. The credential
is either

* an **API key**: the same keys, scopes and tenants as the REST API, verified
  through the cache the edge uses (:class:`switchboard.apikeys.Authenticator`).
  The scope an RPC needs is declared on the method in its ``.proto``
  (``option (switchboard.v1.access) = { scope: "read" }``, see
  ``protos/switchboard/v1/access.proto``), and the tenant comes from the key:
  the request's tenant field is set from it, and a request naming another
  tenant is refused. A method without the option (VerifyApiKey, CreateTenant,
  ...) refuses every API key.
* the **service token**, which the services use between themselves (the edge
  acts for a verified key and names its tenant). It is derived from the master
  key, so nothing more is distributed, or set with SWITCHBOARD_SERVICE_TOKEN
  for a process that should not hold the master key (`switchboard keys
  service-token` prints it). Tokens derived from previous master keys are
  accepted too, so a rolling master-key rotation does not cut services apart.

Health checks and reflection (the schema, no data) stay open: probes and
tools such as grpcurl need them without a credential.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any
from collections.abc import Awaitable, Callable, Iterable, Sequence

import grpc
from nats.js import JetStreamContext
from google.protobuf import descriptor_pool
from google.protobuf.message import Message

from switchboard.apikeys import Authenticator, Principal, bearer_credential
from switchboard.errors import PermissionDenied, RateLimited, SwitchboardError, Unauthenticated
from switchboard.masterkey import accepted_service_tokens
from switchboard.ratelimit import RateLimit
from switchboard.shared_buckets import SharedTokenBuckets
from switchboard.rpc import abort_with
from switchboard.settings import Settings

# Loads the whole contract into the descriptor pool, so any service's rules can be read here.
from switchboard.transcoding import SERVICES  # noqa: F401
from switchboard.v1 import access_pb2

__all__ = ["AccessControl", "MethodAccess", "method_access"]

# Records one audited call: (tenant id, actor, action, resource).
AuditRecorder = Callable[[str, str, str, str], Awaitable[object]]

# Open without a credential: health checks and reflection.
_OPEN_PREFIXES = ("/grpc.health.", "/grpc.reflection.")


@dataclass(frozen=True)
class MethodAccess:
    """What an RPC's ``access`` option says: the scope an API key needs, and where the tenant is named."""

    scope: str | None
    tenant_path: tuple[str, ...]
    # The audit action recorded for a successful call with an API key; None: not audited here.
    audit: str | None = None

    def tenant_of(self, request: Message) -> tuple[Message, str] | None:
        """The message holding the tenant field, and that field's name (None: the request has none)."""
        message = request
        for name in self.tenant_path[:-1]:
            if not hasattr(message, name):
                return None
            message = getattr(message, name)
        return (message, self.tenant_path[-1]) if hasattr(message, self.tenant_path[-1]) else None


def method_access(full_service_names: Iterable[str]) -> dict[str, MethodAccess]:
    """The access rule of every method of these services, by gRPC method path (``/pkg.Service/Method``)."""
    pool = descriptor_pool.Default()
    table = {}
    for full_name in full_service_names:
        for method in pool.FindServiceByName(full_name).methods:
            options = method.GetOptions()
            declared = options.Extensions[access_pb2.access] if options.HasExtension(access_pb2.access) else None
            tenant_field = (declared.tenant_field if declared else "") or "tenant_id"
            table[f"/{full_name}/{method.name}"] = MethodAccess(
                scope=(declared.scope or None) if declared else None, tenant_path=tuple(tenant_field.split(".")),
                audit=(declared.audit or None) if declared else None)
    return table


class AccessControl(grpc.aio.ServerInterceptor):
    """Refuses every call without a valid credential; gives an API key its scope's methods, in its tenant.

    ``api_keys`` None: the server takes the service token only (a test server of no tenant's data).
    """

    def __init__(self, api_keys: Authenticator | None, service_tokens: Sequence[str],
                 methods: dict[str, MethodAccess] | None = None, key_rate: RateLimit | None = None,
                 audit: AuditRecorder | None = None, js: JetStreamContext | None = None) -> None:
        """``key_rate``: each API key's rate over gRPC (SWITCHBOARD_KEY_RATE and _BURST, as on REST), in a
        bucket shared through ``js`` by every service process (None: this process's own); ``audit``:
        records the audited calls API keys make."""
        if not service_tokens:
            raise ValueError("a server needs the service token it accepts")
        self.api_keys = api_keys
        self._service_tokens = tuple(t.encode() for t in service_tokens)
        self.methods: dict[str, MethodAccess] = dict(methods or {})
        self.key_rate = key_rate
        self._buckets = SharedTokenBuckets(js, "grpc-key")
        self.audit = audit

    @classmethod
    def for_process(cls, api_keys: Authenticator | None, settings: Settings,
                    audit: AuditRecorder | None = None, js: JetStreamContext | None = None) -> AccessControl:
        """The access control of a service process: its API-key cache, the service tokens it accepts, the
        keys' rate limit and where audited calls are recorded."""
        return cls(api_keys, accepted_service_tokens(settings), key_rate=RateLimit(settings.access.key_rate_per_s,
                                                                                   settings.access.key_burst),
                   audit=audit, js=js)

    def serve(self, full_service_names: Iterable[str]) -> None:
        """Read the access rules of the services this server serves."""
        self.methods.update(method_access(full_service_names))

    def is_service(self, credential: str) -> bool:
        presented = credential.encode()
        # compare_digest against each: a constant time whichever token matches.
        return any([hmac.compare_digest(presented, token) for token in self._service_tokens])

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
                                details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or method.startswith(_OPEN_PREFIXES):
            return handler
        if handler.unary_unary is None:  # our services have unary methods only: refuse what cannot be checked
            return _refusing(handler, PermissionDenied("streaming methods are not served"))
        inner = handler.unary_unary
        access = self.methods.get(method)

        async def checked(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                principal = await self._admit(request, context, method, access)
            except SwitchboardError as exc:
                await abort_with(context, exc)
            response = await inner(request, context)
            if principal is not None and access is not None and access.audit and self.audit is not None:
                try:  # as over REST: the mutation is in the audit log before the caller hears of it
                    await self.audit(principal.tenant_id, principal.key_id, access.audit,
                                     _resource(request, response))
                except SwitchboardError as exc:
                    await abort_with(context, exc)
            return response

        return grpc.unary_unary_rpc_method_handler(
            checked, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)

    async def _admit(self, request: Message, context: grpc.aio.ServicerContext, method: str,
                     access: MethodAccess | None) -> Principal | None:
        """The API key's principal (None: the service token), once it may make this call."""
        header = next((v for k, v in context.invocation_metadata() or () if k == "authorization"), None)
        credential = bearer_credential(header if isinstance(header, str) else None)
        if self.is_service(credential):
            return None
        if self.api_keys is None:
            raise Unauthenticated("this server takes the service token only")
        principal = await self.api_keys.verify(credential)
        if self.key_rate is not None:
            verdict = await self._buckets.take(principal.key_id, self.key_rate)
            if not verdict.allowed:
                raise RateLimited("this API key is over its rate limit", retry_after_s=verdict.retry_after_s,
                                  headers=verdict.headers())
        if access is None or access.scope is None:
            raise PermissionDenied(f"{method.rsplit('/', 1)[-1]} is internal: API keys cannot call it")
        principal.require(access.scope)
        _bind_tenant(request, access, principal)
        return principal


def _bind_tenant(request: Message, access: MethodAccess, principal: Principal) -> None:
    found = access.tenant_of(request)
    if found is None:
        raise PermissionDenied("this method names no tenant: API keys cannot call it")
    holder, name = found
    named = getattr(holder, name)
    if named and named != principal.tenant_id:
        raise PermissionDenied("this key belongs to another tenant")
    setattr(holder, name, principal.tenant_id)
    # Mutations record who asked: the key, never what the request claims.
    if hasattr(request, "actor"):
        request.actor = principal.key_id


def _resource(request: Message, response: Message) -> str:
    """The id of what an audited call changed: the answer's, its resource's (a created endpoint), the request's."""
    for message in (response, *(getattr(response, f.name) for f in response.DESCRIPTOR.fields
                                 if f.message_type is not None and not f.is_repeated), request):
        found = getattr(message, "id", None)
        if isinstance(found, str) and found:
            return found
    return getattr(request, "tenant_id", "") or "-"


def _refusing(handler: Any, error: SwitchboardError) -> Any:
    async def refuse(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        await abort_with(context, error)

    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(refuse, handler.request_deserializer, handler.response_serializer)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(refuse, handler.request_deserializer, handler.response_serializer)
    return grpc.stream_stream_rpc_method_handler(refuse, handler.request_deserializer, handler.response_serializer)
