"""Event transforms: a route's Jinja2 template turns an event into the body to deliver.

A template sees three variables:

- ``event``: ``id``, ``type``, ``source_id``, ``source_type``, ``received_at`` and
  ``occurred_at`` (ISO 8601 strings) and ``conversation_key``;
- ``payload``: the event's payload as received;
- ``ai``: ``category``, ``priority``, ``sentiment``, ``confidence`` and
  ``summary`` when the event was classified, else none.

A missing field is not an error: ``{{ payload.a.b.c }}`` renders nothing when
any step is missing, and so does a null value (also when joined with ``~``).
A key wins over a method of the same name (``payload.items`` is the field);
``payload["odd-name"]`` reads any key. Calling something undefined, dividing
by zero or any other failure while rendering is a :class:`TransformError`.

``output`` says what the rendering must be. ``"json"``: a JSON document, sent
re-serialised compactly; put values into it with ``{{ payload.x | tojson }}``,
which quotes and escapes strings and writes a missing value as ``null``.
``"text"``: plain text, sent with surrounding whitespace stripped and handed
to destinations as ``{"text": ...}``. Filters beyond Jinja's built-ins:
``tojson`` only.

Templates run in Jinja's immutable sandbox: no imports, no environment, no
private attributes (reading one is an error, not an empty value), no
changing the event. Runaway templates are cut off by budgets checked as they
run: the output is at most 1 MiB, loop iterations and calls together at most
1,000,000 steps, rendering at most one second, ``*``, ``+``, ``**`` and ``~``
may not build a string or list over 1 MiB or a number over 16,384 bits, and
``range`` is at most 100,000 long (Jinja's own limit). A single built-in
filter call is not interrupted. Compiled templates are cached by source and
output, since a route renders the same template for every event.
"""

from __future__ import annotations

import json
import time
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Iterator, Mapping

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.visitor import NodeTransformer

from switchboard.errors import InvalidRequest

__all__ = ["OUTPUTS", "TransformError", "Rendered", "Transform", "check_template",
           "MAX_SOURCE_CHARS", "MAX_OUTPUT_BYTES", "MAX_STEPS", "MAX_RENDER_SECONDS"]

OUTPUTS = ("json", "text")
MAX_SOURCE_CHARS = 50_000
MAX_OUTPUT_BYTES = 1024 * 1024
MAX_STEPS = 1_000_000
MAX_RENDER_SECONDS = 1.0
_MAX_INT_BITS = 16_384
_MAX_MESSAGE = 300


class TransformError(Exception):
    """Rendering failed (undefined attribute used in a strict way, a sandbox violation, output not JSON, too large...)."""


@dataclass(frozen=True)
class Rendered:
    """A rendered transform.

    ``payload``: for ``json`` the parsed JSON value, for ``text`` ``{"text": ...}``.
    ``body``: exactly what to send (UTF-8 text): the compact JSON, or the text.
    """

    payload: Any
    body: str


class _Budget:
    """Steps and time one rendering may still use."""

    __slots__ = ("steps", "deadline")

    def __init__(self) -> None:
        self.steps = 0
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS

    def tick(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise TransformError(f"the template ran over {MAX_STEPS:,} steps (loop iterations and calls)")
        if time.monotonic() > self.deadline:
            raise TransformError(f"rendering took over {MAX_RENDER_SECONDS:g} s")


# Set for the length of one render; the compiled templates are shared.
_budget: ContextVar[_Budget | None] = ContextVar("transform_budget", default=None)


def _tick() -> None:
    budget = _budget.get()
    if budget is not None:
        budget.tick()


class _BudgetChecks(Extension):
    """Loop iterables and ``~`` joins routed through the budget checks (see :func:`_compile`)."""

    def counted(self, iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            _tick()
            yield item

    def concat(self, parts: list[Any]) -> str:
        strings = ["" if part is None else str(part) for part in parts]  # null is nothing, as in output
        if sum(map(len, strings)) > MAX_OUTPUT_BYTES:
            raise TransformError("the result of ~ would be over 1 MiB")
        return "".join(strings)


class _ThroughBudgetChecks(NodeTransformer):
    """Rewrites a parsed template so every for loop and every ``~`` goes through :class:`_BudgetChecks`."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        node = self.generic_visit(node)
        node.iter = self._call("counted", node.iter, node.iter.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        node = self.generic_visit(node)
        return self._call("concat", nodes.List(node.nodes), node.lineno)

    @staticmethod
    def _call(method: str, argument: nodes.Expr, lineno: int) -> nodes.Expr:
        function = nodes.ExtensionAttribute(_BudgetChecks.identifier, method)
        return nodes.Call(function, [argument], [], None, None).set_lineno(lineno)


def _too_big(operator: str, left: Any, right: Any) -> str | None:
    """Why ``left operator right`` must not be computed, checked before it is."""
    sequences = (str, list, tuple)
    if operator == "*" and isinstance(left, int) and isinstance(right, sequences):
        left, right = right, left
    if operator == "+" and isinstance(left, sequences) and isinstance(right, sequences):
        size = len(left) + len(right)
    elif operator == "*" and isinstance(left, sequences) and isinstance(right, int):
        size = len(left) * right
    elif operator == "*" and isinstance(left, int) and isinstance(right, int):
        bits = left.bit_length() + right.bit_length()
        return f"the result of * would be over {_MAX_INT_BITS:,} bits" if bits > _MAX_INT_BITS else None
    elif operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
        bits = left.bit_length() * right
        return f"the result of ** would be over {_MAX_INT_BITS:,} bits" if bits > _MAX_INT_BITS else None
    else:
        return None
    return f"the result of {operator} would be over 1 MiB" if size > MAX_OUTPUT_BYTES else None


class _Environment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "+", "**"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Payload fields are often named items, keys, values...: for ``payload.items`` the key
        # wins over the dict method (Jinja's own order is the other way round).
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        # Loud rather than an empty value: an escape attempt should show on the delivery.
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        problem = _too_big(operator, left, right)
        if problem is not None:
            raise TransformError(problem)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _tick()
        return super().call(__context, __obj, *args, **kwargs)


def _json_default(value: Any) -> Any:
    if isinstance(value, jinja2.Undefined):
        return None
    raise TypeError(f"a {type(value).__name__} cannot be written as JSON")


def _tojson(value: Any) -> str:
    """``value`` as compact JSON (unicode kept as is); a missing value is ``null``."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default)


def _environment() -> _Environment:
    env = _Environment(
        autoescape=False,
        undefined=jinja2.ChainableUndefined,
        # Null renders as nothing, like a missing field, rather than "None".
        finalize=lambda value: "" if value is None else value,
        # Nothing is evaluated at compile time: all work happens under the render budget.
        optimized=False,
        extensions=[_BudgetChecks],
    )
    env.filters["tojson"] = _tojson
    env.globals.pop("lipsum", None)  # text generation on demand, with no use here
    return env


_ENV = _environment()


@lru_cache(maxsize=512)
def _compile(source: str, output: str) -> jinja2.Template:
    if output not in OUTPUTS:
        raise InvalidRequest(f"output must be one of {', '.join(OUTPUTS)}, not {str(output)[:50]!r}")
    if not isinstance(source, str) or not source.strip() or len(source) > MAX_SOURCE_CHARS:
        raise InvalidRequest(f"template source is 1 to {MAX_SOURCE_CHARS:,} characters")
    try:
        parsed = _ENV.parse(source)
        return _ENV.from_string(_ThroughBudgetChecks().visit(parsed))
    except jinja2.TemplateSyntaxError as exc:
        raise InvalidRequest(_cut(f"template line {exc.lineno}: {exc.message or 'syntax error'}")) from None
    except RecursionError:
        raise InvalidRequest("template is nested too deeply") from None


def check_template(source: str, output: str) -> None:
    """InvalidRequest, naming the line, unless ``source`` compiles and ``output`` is one of OUTPUTS.

    The source must be 1 to 50,000 characters and not only whitespace.
    """
    _compile(source, output)


class Transform:
    """A compiled template and its output kind; compiling raises InvalidRequest like :func:`check_template`."""

    def __init__(self, source: str, output: str) -> None:
        self.source = source
        self.output = output
        self._template = _compile(source, output)

    def render(self, context: Mapping[str, Any]) -> Rendered:
        """The template rendered with ``context`` (``event``, ``payload``, ``ai``); TransformError on failure."""
        text = self._render_text(context)
        if self.output == "text":
            text = text.strip()
            return Rendered({"text": text}, text)
        try:
            value = json.loads(text, parse_constant=_reject_constant)
            body = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (ValueError, RecursionError) as exc:
            raise TransformError(_cut(f"the template did not produce JSON: {_json_problem(exc)}")) from None
        return Rendered(value, body)

    def _render_text(self, context: Mapping[str, Any]) -> str:
        token = _budget.set(_Budget())
        chunks: list[str] = []
        size = 0
        try:
            # Streamed, so a runaway template stops at the limit instead of filling memory.
            for chunk in self._template.generate(dict(context)):
                size += len(chunk)
                if size > MAX_OUTPUT_BYTES:
                    raise TransformError("rendered output is over 1 MiB")
                chunks.append(chunk)
                _tick()
        except TransformError as exc:
            raise TransformError(_cut(_where(exc) + str(exc))) from None
        except Exception as exc:  # anything a tenant's template can make go wrong
            raise TransformError(_cut(_where(exc) + _describe(exc))) from None
        finally:
            _budget.reset(token)
        text = "".join(chunks)
        if len(text.encode()) > MAX_OUTPUT_BYTES:
            raise TransformError("rendered output is over 1 MiB")
        return text

    def __repr__(self) -> str:
        return f"Transform(output={self.output!r}, source={self.source[:40]!r})"


def _where(exc: BaseException) -> str:
    """``"line N: "`` for the innermost template line in the traceback, if any."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        # Jinja rewrites tracebacks so that template frames carry template line numbers.
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return f"line {line}: " if line is not None else ""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, jinja2.TemplateError):
        return str(exc) or type(exc).__name__
    if isinstance(exc, RecursionError):
        return "calls are nested too deeply"
    if isinstance(exc, MemoryError):
        return "out of memory"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_problem(exc: BaseException) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if "out of range" in str(exc).lower():
        return "a number is out of range"
    return str(exc)


def _cut(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."
