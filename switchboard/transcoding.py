"""REST transcoded from the contract: each RPC's ``google.api.http`` binding, and JSON to and from its messages.

The ``.proto`` files are the one place the API is declared. A method's
``option (google.api.http)`` gives its REST path, verb and body; its
``(switchboard.v1.access)`` the scope; ``(switchboard.v1.http_rest)`` the
success status; field options (``(switchboard.v1.field)``, ``json_name``)
how a field is shown and the bounds it takes (``protos/switchboard/v1/rest.proto``
states the rules). The edge serves every binding (``gateway``),
``/openapi.json`` is generated from the same descriptors, and the Python
client's REST transport calls them, so a field added to a message appears in
gRPC, REST and OpenAPI at once.

The JSON <-> message translation is ``google.protobuf.json_format``; what this
module adds is the REST shape around it: REST names (the field's own name,
or its ``json_name`` when the ``.proto`` sets one), inline messages, exact JSON
text fields (``payload_json`` shown as ``payload``), null for ``nullable``
fields, whole numbers in ``Struct`` values as integers.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import quote
from dataclasses import dataclass
from typing import Any, cast
from collections.abc import Iterator, Mapping

import orjson
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message

from switchboard.errors import InvalidRequest
from switchboard.protojson import whole, parse_time

# The whole contract in the descriptor pool.
from switchboard.v1 import (  # noqa: F401
    access_pb2,
    ai_pb2,
    analytics_pb2,
    auth_pb2,
    delivery_pb2,
    ingest_pb2,
    rest_pb2,
    router_pb2,
)

__all__ = ["Binding", "FieldRef", "bindings", "binding_for", "rest_name", "rules", "to_rest", "from_rest",
           "from_rest_answer", "rest_request",
           "input_fields", "SERVICES", "FREE_FORM", "JSON_TEXT_SUFFIX"]

# The services, by the name their process (and the client) knows them by.
SERVICES = {"ingest": "IngestService", "router": "RouterService", "ai": "AIService", "delivery": "DeliveryService",
            "auth": "AuthService", "analytics": "AnalyticsService"}

# Shown as plain JSON values, whatever they hold.
FREE_FORM = {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}
TIMESTAMP = "google.protobuf.Timestamp"
FIELD_MASK = "google.protobuf.FieldMask"
# A string field holding exact JSON text: `payload_json` is shown and taken as `payload`.
JSON_TEXT_SUFFIX = "_json"
# Set from the caller's key, never from the request (switchboard/rpc_access.py).
_FROM_KEY = ("tenant_id", "actor")
_NO_RULES = rest_pb2.Field()


def rules(field: FieldDescriptor) -> rest_pb2.Field:
    """The field's ``(switchboard.v1.field)`` option (empty when it has none)."""
    options = field.GetOptions()
    return options.Extensions[rest_pb2.field] if options.HasExtension(rest_pb2.field) else _NO_RULES


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def is_json_text(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_STRING and field.name.endswith(JSON_TEXT_SUFFIX) \
        and not field.is_repeated


@functools.cache
def rest_name(field: FieldDescriptor) -> str:
    """The field's name in REST: its ``json_name`` when the ``.proto`` sets one, else its own."""
    if is_json_text(field):
        return field.name[: -len(JSON_TEXT_SUFFIX)]
    return field.json_name if field.json_name != _camel(field.name) else field.name


def _inline(field: FieldDescriptor) -> Descriptor | None:
    """The message type of a field shown inline, its fields beside its message's own (None: not inline)."""
    message = field.message_type
    return message if message is not None and not field.is_repeated and rules(field).inline else None


def _descriptor(message: Message) -> Descriptor:
    """The message's descriptor. The stubs type ``Message.DESCRIPTOR`` as Descriptor or upb's Descriptor class;
    at runtime it is a Descriptor (``isinstance`` holds), as ``GetMessageClass`` and this module take it."""
    return cast(Descriptor, message.DESCRIPTOR)


# -- messages to REST JSON --------------------------------------------------------------

def to_rest(message: Message, every_field: bool = True) -> dict[str, Any]:
    """A message as the REST API shows it (rest.proto states the rules); ``every_field`` False: only the
    fields set (a request body, as the Python client sends one)."""
    shown = json_format.MessageToDict(message, preserving_proto_field_name=True,
                                      always_print_fields_with_no_presence=every_field,
                                      unquote_int64_if_possible=True)
    return _shaped(shown, _descriptor(message), every_field)


def _shaped(shown: dict[str, Any], descriptor: Descriptor, every_field: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in descriptor.fields:
        value = shown.get(field.name)
        inline = _inline(field)
        if inline is not None:
            if inline.full_name in FREE_FORM:
                out.update(whole(value or {}))
            elif value is not None or every_field:
                # Unset, its fields are still shown (with their defaults), as every field is.
                out.update(to_rest(message_factory.GetMessageClass(inline)(), every_field)
                           if value is None else _shaped(value, inline, every_field))
            continue
        nullable = rules(field).nullable and every_field
        if value is None or (nullable and value in ("", 0, False) and not field.is_repeated):
            if nullable:
                out[rest_name(field)] = None
            continue
        out[rest_name(field)] = _shown_value(field, value, every_field)
    return out


def _shown_value(field: FieldDescriptor, value: Any, every_field: bool) -> Any:
    if is_json_text(field):
        return orjson.loads(value) if value else None
    message = field.message_type
    if message is None or message.full_name in (TIMESTAMP, FIELD_MASK):
        return value
    if message.full_name in FREE_FORM:
        return whole(value)
    if message.GetOptions().map_entry:
        item = message.fields_by_name["value"]
        return {k: _shown_value(item, v, every_field) for k, v in value.items()}
    if field.is_repeated:
        return [_shaped(v, message, every_field) for v in value]
    return _shaped(value, message, every_field)


# -- REST JSON to messages ----------------------------------------------------------------

@dataclass(frozen=True)
class FieldRef:
    """A field a REST request may give: its REST name, the proto path to it and its descriptor."""

    name: str
    path: tuple[str, ...]
    field: FieldDescriptor


def input_fields(descriptor: Descriptor, skip: frozenset[str] = frozenset(), prefix: tuple[str, ...] = (),
                 answer: bool = False) -> Iterator[FieldRef]:
    """The fields a request message takes over REST, inline messages opened: not those set from the key,
    not the update mask (the body's keys are), not output-only ones, not those in ``skip``. ``answer``:
    every field an answer shows instead."""
    for field in descriptor.fields:
        if field.name in skip:
            continue
        if not answer and (field.name in _FROM_KEY or rules(field).output_only or (
                field.message_type is not None and field.message_type.full_name == FIELD_MASK)):
            continue
        inline = _inline(field)
        if inline is not None and inline.full_name not in FREE_FORM:
            yield from input_fields(inline, frozenset(), (*prefix, field.name), answer)
        else:
            yield FieldRef(rest_name(field), (*prefix, field.name), field)


def _proto_json(field: FieldDescriptor, value: Any, answer: bool = False, where: str = "") -> Any:
    """A REST value as json_format takes it for ``field`` (``where``: its name in the request)."""
    if is_json_text(field):
        return orjson.dumps(value).decode()
    message = field.message_type
    if message is None or message.full_name in FREE_FORM or message.full_name in (TIMESTAMP, FIELD_MASK):
        return _timestamp(value, where) if message is not None and message.full_name == TIMESTAMP else value
    if message.GetOptions().map_entry:
        item = message.fields_by_name["value"]
        # A null value in a map is "remove this entry": the empty value.
        return {k: "" if v is None else _proto_json(item, v, answer) for k, v in value.items()} \
            if isinstance(value, dict) else value
    if field.is_repeated:
        return [_proto_object(message, v, answer) for v in value] if isinstance(value, list) else value
    return _proto_object(message, value, answer)


def _timestamp(value: Any, where: str) -> Any:
    """An ISO 8601 time as RFC 3339 (UTC unless it says otherwise), as json_format takes Timestamps."""
    if not isinstance(value, str):
        return value  # json_format refuses it, naming the field
    try:
        return parse_time(value, where).isoformat().replace("+00:00", "Z")
    except InvalidRequest as exc:
        raise InvalidRequest(exc.message, field=where or None) from None


@functools.cache
def _by_name(descriptor: Descriptor, answer: bool) -> dict[str, FieldRef]:
    return {ref.name: ref for ref in input_fields(descriptor, answer=answer)}


def _proto_object(descriptor: Descriptor, value: Any, answer: bool = False) -> Any:
    if not isinstance(value, dict):
        return value  # json_format refuses it, naming the field
    by_name = _by_name(descriptor, answer)
    # An inline free-form field (a simulation's decision) holds the answer's other keys.
    rest_of = next((f.name for f in descriptor.fields
                    if (inline := _inline(f)) is not None and inline.full_name in FREE_FORM and answer), None)
    out: dict[str, Any] = {}
    for key, given in value.items():
        ref = by_name.get(key)
        if ref is None or (rest_of is not None and ref.path == (rest_of,)):
            if rest_of is not None:
                out.setdefault(rest_of, {})[key] = given
                continue
            if answer:
                continue  # a newer server's field: this client does not know it yet
            raise InvalidRequest(f"{key}: unknown field", field=key)
        if given is None and not is_json_text(ref.field):
            continue  # null: not given (a PATCH clears it through the update mask); JSON text's null is null
        holder = out
        for part in ref.path[:-1]:
            holder = holder.setdefault(part, {})
        holder[ref.path[-1]] = _proto_json(ref.field, given, answer, key)
    return out


def from_rest(value: Mapping[str, Any], message: Message, where: str = "") -> Message:
    """Fill ``message`` from a REST JSON object; InvalidRequest naming the field when a value does not fit."""
    try:
        json_format.ParseDict(_proto_object(_descriptor(message), dict(value)), message)
    except (json_format.ParseError, TypeError, ValueError) as exc:
        raise InvalidRequest(f"{where or 'body'}: {_parse_problem(exc)}", field=where or None) from None
    return message


def from_rest_answer(value: Mapping[str, Any], message: Message) -> Message:
    """Fill ``message`` from a REST answer (the inverse of :func:`to_rest`), as the REST client reads one."""
    json_format.ParseDict(_proto_object(_descriptor(message), dict(value), answer=True), message)
    return message


def rest_request(binding: Binding, message: Message) -> tuple[str, dict[str, str], dict[str, Any] | None]:
    """The REST call for a request message: its path, query parameters and JSON body (None: no body)."""
    path = binding.path
    for ref in binding.path_fields:
        path = path.replace("{" + ref.name + "}", quote(str(getattr(message, ref.path[0])), safe=""))
    query = {}
    shown = to_rest(message, every_field=False)
    for ref in binding.query_fields():
        if ref.name in shown and shown[ref.name] is not None:
            value = shown[ref.name]
            query[ref.name] = str(value).lower() if isinstance(value, bool) else str(value)
    if not binding.body:
        return path, query, None
    holder = message if binding.body == "*" else getattr(message, binding.body)
    body = to_rest(holder, every_field=False)
    taken = {ref.name for ref in (binding.body_fields() if binding.body == "*" else
                                  input_fields(_descriptor(holder)))}
    body = {name: value for name, value in body.items() if name in taken}
    mask = binding.update_mask()
    if mask is not None and getattr(message, mask).paths:
        # The mask's fields, a cleared one as null (AIP-134 over REST: the body's keys are the mask).
        names = {".".join(ref.path): ref.name for ref in input_fields(_descriptor(holder))}
        body = {names[p]: body.get(names[p]) for p in getattr(message, mask).paths if p in names}
    return path, query, body


def _parse_problem(exc: Exception) -> str:
    return re.sub(r"^Failed to parse (\w+) field: ", r"\1: ", str(exc))


# -- bindings ------------------------------------------------------------------------------

_VARIABLE = re.compile(r"\{([a-z_.]+)\}")


@dataclass(frozen=True)
class Binding:
    """One REST route: an RPC's ``google.api.http`` binding with its scope, status and fields."""

    service: str
    method: MethodDescriptor
    verb: str
    path: str
    path_fields: tuple[FieldRef, ...]
    body: str
    status: int
    summary: str
    deadline: str
    scope: str | None
    audit: str | None

    @property
    def grpc_path(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def request_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.input_type)

    @property
    def response_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.output_type)

    @property
    def operation_id(self) -> str:
        return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", self.method.name).lower()

    def body_fields(self) -> tuple[FieldRef, ...]:
        """The fields the JSON body gives: all but the path's (``*``), one field's, or none."""
        taken = frozenset(ref.path[0] for ref in self.path_fields)
        if self.body == "*":
            return tuple(input_fields(self.method.input_type, taken))
        if self.body:
            inner = self.method.input_type.fields_by_name[self.body].message_type
            if inner is None:
                raise TypeError(f"{self.method.full_name}: the body field {self.body} is not a message")
            return tuple(FieldRef(ref.name, (self.body, *ref.path), ref.field)
                         for ref in input_fields(inner))
        return ()

    def query_fields(self) -> tuple[FieldRef, ...]:
        """The fields a GET or DELETE takes as query parameters: those not in its path. (A POST or PATCH
        takes its fields in the body only: nothing is read from the query of a change.)"""
        if self.body == "*" or self.verb not in ("GET", "DELETE"):
            return ()
        taken = frozenset([*(ref.path[0] for ref in self.path_fields), *([self.body] if self.body else [])])
        return tuple(input_fields(self.method.input_type, taken))

    def update_mask(self) -> str | None:
        """The request's FieldMask field, set from the body's keys (None: it has none)."""
        for field in self.method.input_type.fields:
            if field.message_type is not None and field.message_type.full_name == FIELD_MASK:
                return field.name
        return None


def _http_rule(method: MethodDescriptor) -> http_pb2.HttpRule | None:
    options = method.GetOptions()
    return options.Extensions[annotations_pb2.http] if options.HasExtension(annotations_pb2.http) else None


def _binding(service: str, method: MethodDescriptor) -> Binding | None:
    rule = _http_rule(method)
    if rule is None:
        return None
    verb = rule.WhichOneof("pattern")
    template = getattr(rule, verb)
    path_fields = []
    for variable in _VARIABLE.findall(template):
        field = method.input_type.fields_by_name[variable]
        path_fields.append(FieldRef(rest_name(field), (variable,), field))
    path = _VARIABLE.sub(lambda m: "{" + rest_name(method.input_type.fields_by_name[m.group(1)]) + "}", template)
    options = method.GetOptions()
    http = options.Extensions[rest_pb2.http_rest] if options.HasExtension(rest_pb2.http_rest) else rest_pb2.Http()
    access = options.Extensions[access_pb2.access] if options.HasExtension(access_pb2.access) else None
    return Binding(service=service, method=method, verb=verb.upper(), path=path, path_fields=tuple(path_fields),
                   body=rule.body, status=http.status or 200, summary=http.summary or method.name,
                   deadline=http.deadline, scope=(access.scope or None) if access else None,
                   audit=(access.audit or None) if access else None)


@functools.cache
def bindings() -> tuple[Binding, ...]:
    """Every REST binding of the contract, literal paths before those with variables at the same place."""
    pool = descriptor_pool.Default()
    found = [b for service, name in SERVICES.items()
             for method in pool.FindServiceByName(f"switchboard.v1.{name}").methods
             if (b := _binding(service, method)) is not None]
    return tuple(sorted(found, key=lambda b: [(seg.startswith("{"), seg) for seg in b.path.split("/")]))


@functools.cache
def binding_for(grpc_path: str) -> Binding | None:
    """The REST binding of an RPC (``/switchboard.v1.DeliveryService/GetEndpoint``), if it has one."""
    return next((b for b in bindings() if b.grpc_path == grpc_path), None)
