"""The request contract of the ``/v1`` API: what ``/openapi.json`` declares is what the edge enforces.

Each :class:`~services.ingest.edge.routing.ApiRoute` declares its query
parameters (:class:`Param`) and names its request body's schema in
``openapi.SCHEMAS``; the path parameters share :data:`PATH_PARAM`. One step,
:meth:`RequestContract.check`, run for every API route after the key and
scope are checked and before the handler, refuses anything else with 400
``invalid_request`` and a message that starts with the field at fault
(``rate_limit.burst: must be at most 2147483647``). Handlers keep the
domain's own checks (defence in depth); the schema only keeps out what no
handler should ever see (wrong types, unknown fields, numbers beyond what the
wire or the database can carry).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from starlette.requests import Request

from services.ingest.edge.fields import parse_time
from services.ingest.edge.requests import read_json_object
from switchboard.errors import InvalidRequest

if TYPE_CHECKING:
    from services.ingest.edge.routing import ApiRoute

__all__ = ["Param", "integer_param", "string_param", "time_param", "PATH_PARAM", "path_param", "INT32_MAX", "INT64_MAX",
           "RequestContract"]

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

# Every id we issue is <prefix>_<32 hex>; anything longer is no id of ours...
PATH_PARAM: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 64}
# ...but a delivery's id is <event_id>:<endpoint_id>[:<replay_id>].
_LONGER_PATH_PARAMS: dict[str, dict[str, Any]] = {"delivery_id": {**PATH_PARAM, "maxLength": 200}}


def path_param(name: str) -> dict[str, Any]:
    """The schema of the path parameter ``name``."""
    return _LONGER_PATH_PARAMS.get(name, PATH_PARAM)

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


def integer_param(name: str, minimum: int, maximum: int, description: str = "") -> Param:
    return Param(name, {"type": "integer", "minimum": minimum, "maximum": maximum}, description)


def string_param(name: str, description: str = "", *, max_length: int = 200,
                 enum: Iterable[str] | None = None, required: bool = False) -> Param:
    schema: dict[str, Any] = {"type": "string", "maxLength": max_length}
    if enum is not None:
        schema = {"type": "string", "enum": list(enum)}
    return Param(name, schema, description, required)


def time_param(name: str, description: str = "") -> Param:
    return Param(name, {"type": "string", "format": "date-time", "maxLength": 64},
                 description or "ISO 8601 time (UTC unless it says otherwise)")


def _field(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _problem(error: ValidationError) -> str:
    """What is wrong, in words a caller can act on."""
    validator, expected = error.validator, error.validator_value
    if validator == "type":
        kinds = expected if isinstance(expected, list) else [expected]
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


def body_required(schema: dict[str, Any]) -> bool:
    """Whether a body must be sent: the schema names a required field (or one of several)."""
    return bool(schema.get("required") or schema.get("oneOf"))


def _integral(value: Any, schema: Any, schemas: dict[str, Any]) -> Any:
    """``value`` with every number the schema calls an integer as an int: JSON's 5.0 is 5,
    and the handlers and services below check ``isinstance(v, int)``."""
    if not isinstance(schema, dict):
        return value
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        schema = schemas.get(ref.rsplit("/", 1)[1], {})
    kinds = schema.get("type")
    if isinstance(value, float) and value.is_integer() and (kinds == "integer" or (
            isinstance(kinds, list) and "integer" in kinds)):
        return int(value)
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        return {k: _integral(v, properties.get(k), schemas) for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_integral(v, schema["items"], schemas) for v in value]
    return value


@dataclass
class RequestContract:
    """The compiled checks of every API route, built once from the OpenAPI schemas."""

    schemas: dict[str, Any]
    _validators: dict[str, Draft202012Validator] = field(default_factory=dict)

    def validator(self, name: str) -> Draft202012Validator:
        found = self._validators.get(name)
        if found is None:
            # The components travel with the schema so its $refs resolve.
            schema = {"$ref": f"#/components/schemas/{name}", "components": {"schemas": self.schemas}}
            found = Draft202012Validator(schema)
            self._validators[name] = found
        return found

    def compile(self, routes: Iterable["ApiRoute"]) -> "RequestContract":
        for route in routes:
            if route.request:
                self.validator(route.request)
        return self

    async def check(self, request: Request, route: "ApiRoute", body_limit: int) -> None:
        """InvalidRequest naming the field unless the path, query and body are as declared."""
        for name, value in request.path_params.items():
            longest = path_param(name)["maxLength"]
            if not isinstance(value, str) or not 1 <= len(value) <= longest:
                raise InvalidRequest(f"{name}: must have 1 to {longest} characters", field=name)
            if "\x00" in value:  # PostgreSQL's text cannot hold it: refused here, as in bodies
                raise InvalidRequest(f"{name}: must not contain NUL characters", field=name)
        declared = {p.name: p for p in route.query}
        for name in request.query_params.keys():
            param = declared.get(name)
            if param is None:
                takes = ", ".join(sorted(declared)) or "none"
                raise InvalidRequest(f"{name}: unknown query parameter (takes {takes})", field=name)
            values = request.query_params.getlist(name)
            if len(values) > 1:
                raise InvalidRequest(f"{name}: given more than once", field=name)
            if "\x00" in values[0]:
                raise InvalidRequest(f"{name}: must not contain NUL characters", field=name)
            param.parse(values[0])
        for param in route.query:
            if param.required and param.name not in request.query_params:
                raise InvalidRequest(f"{param.name}: is required", field=param.name)
        if route.request:
            body = await read_json_object(request, body_limit)
            error = best_match(self.validator(route.request).iter_errors(body))
            if error is not None:
                raise _violation(error)
            body.update(_integral(body, {"$ref": f"#/components/schemas/{route.request}"}, self.schemas))


def query_value(request: Request, param: Param, default: Any = None) -> Any:
    """A declared query parameter's checked value, or ``default`` when absent."""
    raw = request.query_params.get(param.name)
    return default if raw is None else param.parse(raw)
