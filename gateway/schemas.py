"""JSON Schemas of the REST API, generated from the contract's descriptors (``switchboard/transcoding.py``).

Answers are described by reference (``#/components/schemas/<Message>``), every
field always present required (rest.proto's rules for what is shown); requests
inline, refusing unknown fields and carrying the bounds each field's
``(switchboard.v1.field)`` option declares. The edge checks requests against
the same schemas it publishes (contract.py).
"""

from __future__ import annotations

from typing import Any, Literal, cast

import orjson
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from switchboard.transcoding import (
    FIELD_MASK,
    FREE_FORM,
    TIMESTAMP,
    Binding,
    FieldRef,
    input_fields,
    is_json_text,
    rest_name,
    rules,
)
from switchboard.v1 import rest_pb2

__all__ = ["field_schema", "output_schemas", "body_schema", "parameter_schema", "TIME"]

TIME: dict[str, Any] = {"type": "string", "format": "date-time"}
_F = FieldDescriptor
# Integers as the wire carries them: a bigger one is refused with a 400, never overflows below.
_INTEGER_BOUNDS = {_F.TYPE_INT32: (-2**31, 2**31 - 1), _F.TYPE_SINT32: (-2**31, 2**31 - 1),
                   _F.TYPE_SFIXED32: (-2**31, 2**31 - 1), _F.TYPE_UINT32: (0, 2**32 - 1),
                   _F.TYPE_FIXED32: (0, 2**32 - 1), _F.TYPE_INT64: (-2**63, 2**63 - 1),
                   _F.TYPE_SINT64: (-2**63, 2**63 - 1), _F.TYPE_SFIXED64: (-2**63, 2**63 - 1),
                   _F.TYPE_UINT64: (0, 2**64 - 1), _F.TYPE_FIXED64: (0, 2**64 - 1)}
_NUMBER = (_F.TYPE_DOUBLE, _F.TYPE_FLOAT)
# The bounds a (switchboard.v1.field) option can declare, with their JSON Schema keywords.
_Bound = Literal["min_length", "max_length", "minimum", "maximum", "max_items", "max_properties"]
_BOUNDS: tuple[tuple[_Bound, str], ...] = (
    ("min_length", "minLength"), ("max_length", "maxLength"), ("minimum", "minimum"),
    ("maximum", "maximum"), ("max_items", "maxItems"), ("max_properties", "maxProperties"))


def _ref(descriptor: Descriptor) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{descriptor.name}"}


def _bounds(schema: dict[str, Any], declared: rest_pb2.Field, inbound: bool) -> dict[str, Any]:
    """``schema`` with the declared bounds, default, example and description."""
    for name, key in _BOUNDS:
        if declared.HasField(name):
            value = getattr(declared, name)
            schema[key] = int(value) if float(value).is_integer() else value
    if declared.enum:
        schema["enum"] = list(declared.enum)
    if declared.format:
        schema["format"] = declared.format
    if declared.pattern:
        schema["pattern"] = declared.pattern
    if declared.default:
        schema["default"] = orjson.loads(declared.default)
    if declared.example:
        schema["example"] = orjson.loads(declared.example)
    if declared.description:
        schema["description"] = declared.description
    return schema


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        schema["type"] = [*kinds, "null"]
    if "enum" in schema:
        schema["enum"] = [*schema["enum"], None]
    return schema


def _single(field: FieldDescriptor, declared: rest_pb2.Field, inbound: bool) -> dict[str, Any]:
    """The schema of one value of ``field`` (an item, for a repeated field)."""
    if is_json_text(field):
        return {"description": "Any JSON value (kept exact)"}
    message = field.message_type
    if message is not None:
        name = message.full_name
        if name == TIMESTAMP:
            return {**TIME, **({"maxLength": 64} if inbound else {})}
        if name == FIELD_MASK:
            return {"type": "string"}
        if name == "google.protobuf.Struct":
            return {"type": "object"}
        if name == "google.protobuf.ListValue":
            items = {"type": declared.items.type} if declared.items.type else {}
            return {"type": "array", "items": _bounds(items, declared.items, inbound)}
        if name == "google.protobuf.Value":
            return {}
        return _input_object(message) if inbound else _ref(message)
    if field.type == _F.TYPE_BOOL:
        return {"type": "boolean"}
    if field.type in _INTEGER_BOUNDS:
        low, high = _INTEGER_BOUNDS[field.type]
        return {"type": "integer", **({"minimum": low, "maximum": high} if inbound else {})}
    if field.type in _NUMBER:
        return {"type": "number"}
    if field.type == _F.TYPE_ENUM:  # an enum field always has its enum_type
        return {"type": "string", "enum": [v.name for v in cast(EnumDescriptor, field.enum_type).values]}
    return {"type": "string"}


def field_schema(field: FieldDescriptor, inbound: bool) -> dict[str, Any]:
    """The schema of ``field`` as a request takes it (``inbound``) or an answer shows it."""
    declared = rules(field)
    message = field.message_type
    if message is not None and message.GetOptions().map_entry:
        item_field = message.fields_by_name["value"]
        values = _bounds(_single(item_field, declared.items, inbound), declared.items, inbound)
        if declared.items.nullable:
            values = _nullable(values)
        schema: dict[str, Any] = {"type": "object", "additionalProperties": values}
    elif field.is_repeated:
        item = _bounds(_single(field, declared.items, inbound), declared.items, inbound)
        schema = {"type": "array", "items": item}
    else:
        schema = _single(field, declared, inbound)
    if "$ref" not in schema:
        schema = _bounds(schema, declared, inbound)
    elif declared.description:
        schema = {"allOf": [schema], "description": declared.description}
    return _nullable(schema) if declared.nullable else schema


def _input_object(descriptor: Descriptor, refs: tuple[FieldRef, ...] | None = None) -> dict[str, Any]:
    """A request object: only its fields (unknown ones refused), those declared required required."""
    refs = tuple(input_fields(descriptor)) if refs is None else refs
    schema: dict[str, Any] = {
        "type": "object", "additionalProperties": False,
        "properties": {ref.name: field_schema(ref.field, inbound=True) for ref in refs},
    }
    required = [ref.name for ref in refs if rules(ref.field).required]
    if required:
        schema["required"] = required
    taken = {ref.path[-1] for ref in refs}
    for oneof in descriptor.oneofs:
        options = oneof.GetOptions()
        if options.HasExtension(rest_pb2.one_required) and options.Extensions[rest_pb2.one_required]:
            names = [rest_name(f) for f in oneof.fields if f.name in taken]
            schema["oneOf"] = [{"required": [n]} for n in names]
            schema["x-one-of-message"] = f"give {' or '.join(names)}, not both"
    return schema


def body_schema(binding: Binding) -> dict[str, Any] | None:
    """The JSON body a binding takes (None: it takes none)."""
    if not binding.body:
        return None
    if binding.body == "*":
        return _input_object(binding.method.input_type, binding.body_fields())
    # A binding's body field (when not "*") is a message, as body_fields() takes it too.
    return _input_object(cast(Descriptor, binding.method.input_type.fields_by_name[binding.body].message_type))


def parameter_schema(ref: FieldRef, in_path: bool = False) -> dict[str, Any]:
    """A path or query parameter's schema: a path parameter has 1 to its declared length (64) characters."""
    schema = field_schema(ref.field, inbound=True)
    if in_path:
        schema = {"type": "string", "minLength": 1, "maxLength": rules(ref.field).max_length or 64}
    elif ref.field.message_type is None and schema.get("type") == "string" and "enum" not in schema:
        schema.setdefault("maxLength", 200)
    return schema


def _output_schema(descriptor: Descriptor) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    open_ended = False
    for field in descriptor.fields:
        declared = rules(field)
        if declared.inline and field.message_type is not None and not field.is_repeated:
            if field.message_type.full_name in FREE_FORM:
                open_ended = True
            else:
                inner = _output_schema(field.message_type)
                properties.update(inner["properties"])
                required += inner.get("required", [])
            continue
        name = rest_name(field)
        properties[name] = field_schema(field, inbound=False)
        if declared.nullable or not field.has_presence:
            required.append(name)
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if open_ended:
        schema["description"] = "With the fields of a free-form object beside these"
    return schema


def output_schemas(roots: list[Descriptor]) -> dict[str, Any]:
    """The answer schemas of ``roots`` and of every message they show, by message name."""
    found: dict[str, Any] = {}
    pending = list(roots)
    while pending:
        descriptor = pending.pop()
        if descriptor.name in found or descriptor.full_name in FREE_FORM:
            continue
        found[descriptor.name] = _output_schema(descriptor)
        for field in descriptor.fields:
            message = field.message_type
            if message is None or message.full_name in FREE_FORM or message.full_name in (TIMESTAMP, FIELD_MASK):
                continue
            if message.GetOptions().map_entry:
                value = message.fields_by_name["value"].message_type
                if value is not None and value.full_name not in FREE_FORM:
                    pending.append(value)
            elif rules(field).inline:
                pending.extend(f.message_type for f in message.fields
                               if f.message_type is not None and not f.message_type.GetOptions().map_entry
                               and f.message_type.full_name not in FREE_FORM
                               and f.message_type.full_name not in (TIMESTAMP, FIELD_MASK))
            else:
                pending.append(message)
    return found
