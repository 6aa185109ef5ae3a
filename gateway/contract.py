"""The request contract of the ``/v1`` API: what ``/openapi.json`` declares is what the edge enforces.

Each route's path and query parameters and body schema come from its RPC's
binding in the contract (schemas.py builds them from the descriptors). One
step, :meth:`RouteContract.check`, run for every API route after the key and
scope are checked and before the RPC is called, refuses anything else with
400 ``invalid_request`` and a message that starts with the field at fault
(``rate_limit.burst: must be at most 2147483647``). The services keep the
domain's own checks (defence in depth); the schema only keeps out what no
service should ever see (wrong types, unknown fields, numbers beyond what the
wire or the database can carry).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Iterable

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from starlette.requests import Request

from gateway.requests import read_json_object
from gateway.schemas import body_schema, parameter_schema
from switchboard.errors import InvalidRequest
from switchboard.protojson import parse_time
from switchboard.transcoding import Binding, rules

__all__ = ["Param", "RouteContract", "contracts"]

_INTEGER = re.compile(r"-?[0-9]{1,19}")


@dataclass(frozen=True)
class Param:
    """A query parameter: its name, JSON schema (``integer`` or ``string``) and what it means."""

    name: str
    schema: dict[str, Any]
    description: str = ""
    required: bool = False
    # Compiled once: parse() runs for every parameter of every request.
    _validator: Draft202012Validator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_validator", Draft202012Validator(self.schema))

    def parse(self, raw: str) -> Any:
        """The value of ``raw`` as the schema's type, checked against it; InvalidRequest otherwise."""
        schema = self.schema
        if schema.get("type") == "integer":
            if not _INTEGER.fullmatch(raw):
                raise InvalidRequest(f"{self.name}: must be an integer", field=self.name)
            value: Any = int(raw)
        else:
            value = raw
            if schema.get("format") == "date-time":
                try:
                    parse_time(raw, self.name)
                except InvalidRequest:
                    raise InvalidRequest(f"{self.name}: must be an ISO 8601 time between the years 1 and 9999 "
                                         "(UTC), like 2026-01-31T12:00:00Z", field=self.name) from None
        error = best_match(self._validator.iter_errors(value))
        if error is not None:
            raise InvalidRequest(f"{self.name}: {_problem(error)}", field=self.name)
        return value


def _field(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _problem(error: ValidationError) -> str:
    """What is wrong, in words a caller can act on."""
    validator, expected = error.validator, error.validator_value
    if validator == "type":
        kinds: list[str] = expected if isinstance(expected, list) else [expected]
        names = {"object": "a JSON object", "array": "a list", "string": "a string", "integer": "an integer",
                 "number": "a number", "boolean": "true or false", "null": "null"}
        return "must be " + " or ".join(names.get(k, k) for k in kinds)
    if validator == "minLength":
        return f"must have at least {expected} character{'s' if expected != 1 else ''}"
    if validator == "maxLength":
        return f"must have at most {expected} characters"
    if validator == "minimum":
        return f"must be at least {expected}"
    if validator == "maximum":
        return f"must be at most {expected}"
    if validator == "exclusiveMinimum":
        return f"must be more than {expected}"
    if validator == "enum":
        return "must be one of " + ", ".join(str(v) for v in expected)
    if validator == "maxItems":
        return f"must have at most {expected} items"
    if validator == "minItems":
        return f"must have at least {expected} item{'s' if expected != 1 else ''}"
    if validator == "oneOf":
        return "must match exactly one of the forms the schema gives"
    return error.message


def _violation(error: ValidationError) -> InvalidRequest:
    """The 400 for a body the request schema refuses: ``<field>: <problem>``, the field named too."""
    path = list(error.absolute_path)
    if error.validator == "required":
        missing = next((name for name in error.validator_value if name not in error.instance), "")
        field, problem = _field([*path, missing]), "is required"
    elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        unknown = sorted(str(k) for k in error.instance if k not in allowed)
        takes = ", ".join(sorted(allowed))
        field, problem = _field([*path, unknown[0]]), "unknown field" + (f" (takes {takes})" if takes else "")
    elif error.validator == "oneOf" and error.schema.get("x-one-of-message"):
        field, problem = _field(path), error.schema["x-one-of-message"]
    else:
        field, problem = _field(path), _problem(error)
    return InvalidRequest(f"{field}: {problem}", field=field)


def _integral(value: Any, schema: Any) -> Any:
    """``value`` with every number the schema calls an integer as an int: JSON's 5.0 is 5,
    and the services below take integers only."""
    if not isinstance(schema, dict):
        return value
    kinds = schema.get("type")
    if isinstance(value, float) and value.is_integer() and (kinds == "integer" or (
            isinstance(kinds, list) and "integer" in kinds)):
        return int(value)
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        return {k: _integral(v, properties.get(k)) for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_integral(v, schema["items"]) for v in value]
    return value


@dataclass(frozen=True)
class RouteContract:
    """What one route takes: its path and query parameters and its body, as /openapi.json declares them."""

    path: dict[str, Param]
    query: dict[str, Param]
    body: Draft202012Validator | None

    @classmethod
    def of(cls, binding: Binding) -> RouteContract:
        path = {ref.name: Param(ref.name, parameter_schema(ref, in_path=True)) for ref in binding.path_fields}
        query = {ref.name: Param(ref.name, parameter_schema(ref), rules(ref.field).description,
                                 rules(ref.field).required) for ref in binding.query_fields()}
        schema = body_schema(binding)
        return cls(path, query, Draft202012Validator(schema) if schema is not None else None)

    async def check(self, request: Request, body_limit: int) -> dict[str, Any]:
        """The request's path, query and body values (REST names), checked; InvalidRequest naming the field
        at fault otherwise."""
        given: dict[str, Any] = {}
        for name, value in request.path_params.items():
            if "\x00" in value:  # PostgreSQL's text cannot hold it: refused here, as in bodies
                raise InvalidRequest(f"{name}: must not contain NUL characters", field=name)
            longest = self.path[name].schema["maxLength"]
            if not 1 <= len(value) <= longest:
                raise InvalidRequest(f"{name}: must have 1 to {longest} characters", field=name)
            given[name] = value
        for name in request.query_params.keys():
            param = self.query.get(name)
            if param is None:
                takes = ", ".join(sorted(self.query)) or "none"
                raise InvalidRequest(f"{name}: unknown query parameter (takes {takes})", field=name)
            values = request.query_params.getlist(name)
            if len(values) > 1:
                raise InvalidRequest(f"{name}: given more than once", field=name)
            if "\x00" in values[0]:
                raise InvalidRequest(f"{name}: must not contain NUL characters", field=name)
            given[name] = param.parse(values[0])
        for param in self.query.values():
            if param.required and param.name not in request.query_params:
                raise InvalidRequest(f"{param.name}: is required", field=param.name)
        if self.body is not None:
            body = await read_json_object(request, body_limit)
            error = best_match(self.body.iter_errors(body))
            if error is not None:
                raise _violation(error)
            given["body"] = _integral(body, self.body.schema)
        return given


def contracts(bindings: Iterable[Binding]) -> dict[str, RouteContract]:
    """Every binding's compiled contract, by its gRPC path."""
    return {binding.grpc_path: RouteContract.of(binding) for binding in bindings}
