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
1,000,000 steps, rendering at most one second, and ``range`` is at most
100,000 long (Jinja's own limit).

Memory is bounded the same way, before anything is built: no operator,
filter or method may build a string or list over 1 MiB (1,048,576 characters
or items; :mod:`services.router.transform_sizes` says how long a result would
be before it is made) or a number over 16,384 bits, and everything one
rendering builds (results, literals, the text of blocks and macros) counts
towards 32 MiB. Nothing is evaluated when a template is compiled (Jinja folds
constant expressions into the compiled code even with ``optimized=False``:
``{{ 'x' | center(100000000) }}`` held 100 MB in the cache), so a template's
compiled size follows its source, and the cache of compiled templates is
bounded by their total source size as well as their number.
"""

from __future__ import annotations

import functools
import io
import itertools
import json
import sys
import threading
import time
import types
from collections import OrderedDict
from contextvars import ContextVar
from dataclasses import dataclass
from collections import abc
from typing import Any, cast
from collections.abc import Callable, Iterable, Iterator, Mapping

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.ext import Extension
from jinja2.filters import make_attrgetter
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import Namespace, _PassArg
from jinja2.visitor import NodeTransformer

from services.router.transform_sizes import (FILTER_LENGTHS, METHOD_LENGTHS, SPLITTING_METHODS, WORD_FILTERS,
                                             format_length, printf_length, text_length)
from switchboard.errors import InvalidRequest

__all__ = ["OUTPUTS", "TransformError", "Rendered", "Transform", "check_template",
           "MAX_SOURCE_CHARS", "MAX_OUTPUT_BYTES", "MAX_VALUE_LENGTH", "MAX_BUILT_BYTES", "MAX_STEPS",
           "MAX_RENDER_SECONDS", "MAX_CACHED_TEMPLATES", "MAX_CACHED_SOURCE_CHARS"]

OUTPUTS = ("json", "text")
MAX_SOURCE_CHARS = 50_000
MAX_OUTPUT_BYTES = 1024 * 1024
#: The longest string (in characters) or list (in items) a template may build.
MAX_VALUE_LENGTH = 1024 * 1024
#: What one rendering may build in all, in bytes as Python counts them (sys.getsizeof).
MAX_BUILT_BYTES = 32 * 1024 * 1024
MAX_STEPS = 1_000_000
MAX_RENDER_SECONDS = 1.0
#: Compiled templates kept: at most this many, of at most this much source in all (compiled code is
#: a few times its source: 50,000 characters compile to a few MB).
MAX_CACHED_TEMPLATES = 512
MAX_CACHED_SOURCE_CHARS = 2_000_000
_MAX_INT_BITS = 16_384
_MAX_MESSAGE = 300
# Each piece of a split, each character of a string turned into a list: a new object of about this size.
_OBJECT_BYTES = 64
# Each item of a list a filter copies or iterates: a pointer, and room for the list to grow.
_ITEM_BYTES = 16


class TransformError(Exception):
    """Rendering failed (undefined attribute used in a strict way, a sandbox violation, output not JSON,
    too large...)."""


@dataclass(frozen=True)
class Rendered:
    """A rendered transform.

    ``payload``: for ``json`` the parsed JSON value, for ``text`` ``{"text": ...}``.
    ``body``: exactly what to send (UTF-8 text): the compact JSON, or the text.
    """

    payload: Any
    body: str


class _Budget:
    """Steps, time and memory one rendering may still use."""

    __slots__ = ("steps", "deadline", "built")

    def __init__(self) -> None:
        self.steps = 0
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS
        self.built = 0

    def tick(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise TransformError(f"the template ran over {MAX_STEPS:,} steps (loop iterations and calls)")
        if time.monotonic() > self.deadline:
            raise TransformError(f"rendering took over {MAX_RENDER_SECONDS:g} s")

    def charge(self, nbytes: int) -> None:
        self.built += nbytes
        if self.built > MAX_BUILT_BYTES:
            raise TransformError(f"the template built over {MAX_BUILT_BYTES // 1024 // 1024} MiB of values")


# Set for the length of one render; the compiled templates are shared.
_budget: ContextVar[_Budget | None] = ContextVar("transform_budget", default=None)


def _tick() -> None:
    budget = _budget.get()
    if budget is not None:
        budget.tick()


def _charge(nbytes: int) -> None:
    """Counts ``nbytes`` towards what this rendering built (before building it, where that is known)."""
    budget = _budget.get()
    if budget is not None:
        budget.built += nbytes  # Budget.charge, inlined: this runs for every operation
        if budget.built > MAX_BUILT_BYTES:
            budget.charge(0)


def _refuse_over(what: str, length: int) -> None:
    if length > MAX_VALUE_LENGTH:
        raise TransformError(f"the result of {what} would be over 1 MiB")


def _size(value: Any) -> int:
    """Bytes ``value`` itself takes (not what it refers to, which was counted when built)."""
    if isinstance(value, Namespace):
        return sys.getsizeof(value) + sys.getsizeof(value._Namespace__attrs)
    try:
        return sys.getsizeof(value)
    except TypeError:
        return _OBJECT_BYTES


# The types most results are, checked by exact type first: this runs for every operation.
_PLAIN = frozenset({str, int, float, bool, list, tuple, dict, type(None)})


def _charged(value: Any) -> Any:
    """``value``, counted as built; an iterator's items are counted as they come."""
    if type(value) in _PLAIN:
        _charge(sys.getsizeof(value))
    elif isinstance(value, abc.Iterator):
        return _counting(value)
    else:
        _charge(_size(value))
    return value


def _counting(items: Iterable[Any], item_bytes: int | None = None) -> Iterator[Any]:
    for item in items:
        _charge(_size(item) if item_bytes is None else item_bytes)
        yield item


def _text(value: Any, what: str) -> int:
    """len(str(value)); TransformError, before it is made, when that is over 1 MiB."""
    length = text_length(value, MAX_VALUE_LENGTH)
    _refuse_over(what, length)
    return length


class _BudgetChecks(Extension):
    """Loop iterables, ``~`` joins and literals routed through the budget checks (see :func:`_compile`)."""

    def counted(self, iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            _tick()
            yield item

    def concat(self, parts: list[Any]) -> str:
        parts = ["" if part is None else part for part in parts]  # null is nothing, as in output
        length = sum(len(part) if isinstance(part, str) else text_length(part, MAX_VALUE_LENGTH) for part in parts)
        _refuse_over("~", length)
        joined = "".join(map(str, parts))
        _charge(_size(joined))
        return joined

    def built(self, value: Any) -> Any:
        """A list, tuple or dict literal just made (its items were counted when they were made)."""
        _charge(_size(value))
        return value


class _ThroughBudgetChecks(NodeTransformer):
    """Rewrites a parsed template so every for loop, ``~`` and literal goes through :class:`_BudgetChecks`."""

    # generic_visit returns the node it was given (its children replaced), so the node keeps its class.
    def visit_For(self, node: nodes.For) -> nodes.Node:
        node = cast(nodes.For, self.generic_visit(node))
        node.iter = self._call("counted", node.iter, node.iter.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        node = cast(nodes.Concat, self.generic_visit(node))
        return self._call("concat", nodes.List(node.nodes), node.lineno)

    def _literal(self, node: nodes.Expr) -> nodes.Node:
        node = cast(nodes.Expr, self.generic_visit(node))
        # A literal in a loop is a new object each time round: counted, so a loop cannot pile them up unseen.
        return self._call("built", node, node.lineno) if getattr(node, "ctx", "load") == "load" else node

    visit_List = visit_Tuple = visit_Dict = _literal

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
        node = cast(nodes.Getitem, self.generic_visit(node))
        # Jinja slices directly, not through the environment's getitem: a slice is a copy, so counted here.
        return self._call("built", node, node.lineno) if isinstance(node.arg, nodes.Slice) else node

    def visit_EvalContextModifier(self, node: nodes.EvalContextModifier) -> nodes.Node:
        node = cast(nodes.EvalContextModifier, self.generic_visit(node))
        for option in node.options:
            # Jinja evaluates a constant-looking option while compiling; through a call it waits for the render.
            if not isinstance(option.value, nodes.Const):
                option.value = self._call("built", option.value, option.lineno)
        return node

    visit_ScopedEvalContextModifier = visit_EvalContextModifier

    @staticmethod
    def _call(method: str, argument: nodes.Node, lineno: int) -> nodes.Expr:
        function = nodes.ExtensionAttribute(_BudgetChecks.identifier, method)
        call = nodes.Call(function, [argument], [], None, None)
        call.set_lineno(lineno)
        return call


def _too_big(operator: str, left: Any, right: Any) -> str | None:
    """Why ``left operator right`` must not be computed, checked before it is."""
    sequences = (str, bytes, list, tuple)
    if operator == "*" and isinstance(left, int) and isinstance(right, sequences):
        left, right = right, left
    if operator == "+" and isinstance(left, sequences) and isinstance(right, sequences):
        size = len(left) + len(right)
    elif operator == "*" and isinstance(left, sequences) and isinstance(right, int):
        size = len(left) * right
    elif operator == "%" and isinstance(left, (str, bytes)):
        size = printf_length(left, right, MAX_VALUE_LENGTH)
    elif operator == "*" and isinstance(left, int) and isinstance(right, int):
        bits = left.bit_length() + right.bit_length()
        return f"the result of * would be over {_MAX_INT_BITS:,} bits" if bits > _MAX_INT_BITS else None
    elif operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
        bits = left.bit_length() * right
        return f"the result of ** would be over {_MAX_INT_BITS:,} bits" if bits > _MAX_INT_BITS else None
    else:
        return None
    return f"the result of {operator} would be over 1 MiB" if size > MAX_VALUE_LENGTH else None


class _CodeGenerator(CodeGenerator):
    def _output_child_to_const(self, node: nodes.Expr, frame: Frame, finalize: Any) -> str:
        # Jinja folds constant output ({{ 'x' | center(100000000) }}) into the compiled code even with
        # optimized=False: the work would run unbounded at compile time and its result stay in the cache.
        if not isinstance(node, nodes.TemplateData):
            raise nodes.Impossible()
        return super()._output_child_to_const(node, frame, finalize)


class _Environment(ImmutableSandboxedEnvironment):
    code_generator_class = _CodeGenerator
    # All of them: each result is counted, and the ones that can grow are measured first.
    intercepted_binops = frozenset({"*", "+", "**", "-", "/", "//", "%"})
    intercepted_unops = frozenset({"-", "+"})

    @staticmethod
    def concat(parts: Iterable[str]) -> str:
        """The text of a block, a macro or a filter section, joined (the output itself is streamed)."""
        parts = list(parts)
        _refuse_over("a block or macro", sum(map(len, parts)))
        joined = "".join(parts)
        _charge(_size(joined))
        return joined

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Payload fields are often named items, keys, values...: for ``payload.items`` the key
        # wins over the dict method (Jinja's own order is the other way round).
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        value = super().getattr(obj, attribute)
        if isinstance(value, (types.BuiltinMethodType, types.MethodType)):
            _charge(_size(value))  # a bound method is a new object each time
        return value

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        # Loud rather than an empty value: an escape attempt should show on the delivery.
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        problem = _too_big(operator, left, right)
        if problem is not None:
            raise TransformError(problem)
        return _charged(super().call_binop(context, operator, left, right))

    def call_unop(self, context: jinja2.runtime.Context, operator: str, arg: Any) -> Any:
        return _charged(super().call_unop(context, operator, arg))

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _tick()
        method = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format in a safe formatter
        owner = getattr(method, "__self__", None)
        if isinstance(owner, _BudgetChecks):
            return super().call(__context, __obj, *args, **kwargs)  # counts what it builds itself
        name = getattr(method, "__name__", "")
        if isinstance(owner, (str, bytes, int)) and isinstance(method, types.BuiltinMethodType):
            args = _measure_method(owner, name, args, kwargs)
        elif isinstance(owner, dict) and name == "fromkeys" and args:
            keys = list(_counting(args[0], _OBJECT_BYTES))
            args = (keys, *args[1:])
        return _charged(super().call(__context, __obj, *args, **kwargs))


def _json_default(value: Any) -> Any:
    if isinstance(value, jinja2.Undefined):
        return None
    raise TypeError(f"a {type(value).__name__} cannot be written as JSON")


def _tojson(value: Any) -> str:
    """``value`` as compact JSON (unicode kept as is); a missing value is ``null``."""
    # JSON is at most 1.5 times the text of a value (\u0001 for \x01): measured, then checked exactly.
    _text(value, "the tojson filter")
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default)
    _refuse_over("the tojson filter", len(text))
    return text


def _measure_method(owner: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Refuses a str, bytes or int method call whose result would be over 1 MiB; the arguments to call it with."""
    what = f"{name}()"
    if name == "join" and args and not isinstance(owner, int):
        # Materialised first (counted as they come), so the result's length is known before it is made.
        items = list(_counting(args[0], _ITEM_BYTES))
        _refuse_over(what, len(owner) * max(len(items) - 1, 0)
                     + sum(len(i) if isinstance(i, (str, bytes)) else 0 for i in items))
        return (items, *args[1:])
    if name in ("format", "format_map") and isinstance(owner, str):
        if name == "format_map":
            length = format_length(owner, (), args[0] if args and isinstance(args[0], Mapping) else {},
                                   MAX_VALUE_LENGTH)
        else:
            length = format_length(owner, args, kwargs, MAX_VALUE_LENGTH)
        _refuse_over(what, length)
        return args
    measure = METHOD_LENGTHS.get(name)
    if measure is not None:
        try:
            length = measure(owner, *args, limit=MAX_VALUE_LENGTH, **kwargs)
        except (TypeError, ValueError, AttributeError):
            return args  # the call itself fails the same way, building nothing
        _refuse_over(what, length)
        if name in SPLITTING_METHODS:
            _charge(length * _OBJECT_BYTES)
    elif not isinstance(owner, int):
        _charge(3 * len(owner))  # upper(), hex()...: at most three times as long
    return args


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` with its result measured before it is made (where it can grow) and counted after."""
    data = 0 if _PassArg.from_obj(function) is None else 1  # after the context or environment Jinja passes
    measure = FILTER_LENGTHS.get(name)
    stringifies = name not in _NOT_STRINGIFYING
    iterates = name in _MATERIALIZING
    what = f"the {name} filter"

    @functools.wraps(function)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        if len(args) > data:
            value = args[data]
            if stringifies and not isinstance(value, str):
                _text(value, what)
            if iterates:
                if isinstance(value, str):
                    _charge(len(value) * _OBJECT_BYTES)  # each character an object
                elif isinstance(value, abc.Sized):
                    _charge(len(value) * _ITEM_BYTES)
                elif isinstance(value, abc.Iterator):
                    args = (*args[:data], _counting(value, _ITEM_BYTES), *args[data + 1:])
            if name in WORD_FILTERS and isinstance(value, str):
                _charge(len(value) * 40)  # the words it splits the text into, held for a moment
            if name == "join":
                args = (*args[:data], _join_items(args[data], args[data + 1:], kwargs), *args[data + 1:])
            if measure is not None:
                try:
                    length = measure(*args[data:], limit=MAX_VALUE_LENGTH, **kwargs)
                except (TypeError, ValueError, AttributeError):
                    length = 0  # the filter itself fails the same way, building nothing
                _refuse_over(what, length)
        return _charged(function(*args, **kwargs))

    return bounded


# Filters that never turn their value into text (the rest do: ``upper`` of a list is its text, upper-cased).
_NOT_STRINGIFYING = frozenset({
    "abs", "attr", "batch", "count", "d", "default", "dictsort", "first", "float", "groupby", "int", "items",
    "join", "last", "length", "list", "map", "max", "min", "random", "reject", "rejectattr", "reverse", "round",
    "select", "selectattr", "slice", "sort", "sum", "unique", "tojson", "filesizeformat", "pprint", "urlencode",
    "xmlattr", "escape", "e", "forceescape"})
# Filters that hold every item of their value at once (a copy, a sorted list, groups...).
_MATERIALIZING = frozenset({"list", "sort", "unique", "groupby", "dictsort", "slice", "batch", "join"})


def _join_items(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The items for join, checked so that the result is at most 1 MiB before it is made."""
    items = list(value) if not isinstance(value, (list, tuple)) else value
    separator = args[0] if args else kwargs.get("d", "")
    length = len(str(separator)) * max(len(items) - 1, 0)
    attribute = args[1] if len(args) > 1 else kwargs.get("attribute")
    if attribute is None:
        length += sum(text_length(item, MAX_VALUE_LENGTH) for item in items)
    _refuse_over("the join filter", length)
    return items


@jinja2.pass_environment
def _sum(environment: jinja2.Environment, iterable: Iterable[Any], attribute: str | int | None = None,
         start: Any = 0) -> Any:
    """Jinja's sum, measured: lists and tuples are joined in one go (sum() copies the total for each one)."""
    if attribute is not None:
        iterable = map(make_attrgetter(environment, attribute), iterable)
    values = list(_counting(iterable, _ITEM_BYTES))
    if isinstance(start, (list, tuple)) and all(isinstance(v, type(start)) for v in values):
        _refuse_over("the sum filter", len(start) + sum(map(len, values)))
        # Both sides are start's own type (list or tuple), which mypy cannot tell from the union.
        return start + type(start)(itertools.chain.from_iterable(values))  # type: ignore[operator]
    return sum(values, start)


def _finalize(value: Any) -> Any:
    # Null renders as nothing, like a missing field, rather than "None".
    if value is None:
        return ""
    # Each output is counted: inside a block or macro it is held until the block's text is joined.
    if isinstance(value, str):
        _charge(len(value) + 8)
    elif type(value) in _NUMBERS:
        _charge(_OBJECT_BYTES)
    else:
        _charge(_text(value, "an output") + _OBJECT_BYTES)
    return value


_NUMBERS = frozenset({int, float, bool})


def _environment() -> _Environment:
    env = _Environment(
        autoescape=False,
        undefined=jinja2.ChainableUndefined,
        finalize=_finalize,
        # Nothing is evaluated at compile time: all work happens under the render budget (see _CodeGenerator).
        optimized=False,
        extensions=[_BudgetChecks],
    )
    env.filters["tojson"] = _tojson
    env.filters["sum"] = _sum
    env.filters = {name: _bounded_filter(name, function) for name, function in env.filters.items()}
    env.globals.pop("lipsum", None)  # text generation on demand, with no use here
    return env


_ENV = _environment()


class _CompiledCache:
    """The compiled templates most recently used, bounded by count and by total source size."""

    def __init__(self) -> None:
        self._templates: OrderedDict[tuple[str, str], jinja2.Template] = OrderedDict()
        self._source_chars = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> jinja2.Template | None:
        with self._lock:
            template = self._templates.get(key)
            if template is not None:
                self._templates.move_to_end(key)
            return template

    def put(self, key: tuple[str, str], template: jinja2.Template) -> None:
        with self._lock:
            if key in self._templates:
                return
            self._templates[key] = template
            self._source_chars += len(key[0])
            while len(self._templates) > MAX_CACHED_TEMPLATES or self._source_chars > MAX_CACHED_SOURCE_CHARS:
                (source, _), _ = self._templates.popitem(last=False)
                self._source_chars -= len(source)

    def __len__(self) -> int:
        return len(self._templates)

    @property
    def source_chars(self) -> int:
        return self._source_chars


_COMPILED = _CompiledCache()


def _compile(source: str, output: str) -> jinja2.Template:
    if output not in OUTPUTS:
        raise InvalidRequest(f"output must be one of {', '.join(OUTPUTS)}, not {str(output)[:50]!r}")
    if not isinstance(source, str) or not source.strip() or len(source) > MAX_SOURCE_CHARS:
        raise InvalidRequest(f"template source is 1 to {MAX_SOURCE_CHARS:,} characters")
    template = _COMPILED.get((source, output))
    if template is not None:
        return template
    try:
        parsed = _ENV.parse(source)
        template = _ENV.from_string(_ThroughBudgetChecks().visit(parsed))
    except jinja2.TemplateSyntaxError as exc:
        raise InvalidRequest(_cut(f"template line {exc.lineno}: {exc.message or 'syntax error'}")) from None
    except RecursionError:
        raise InvalidRequest("template is nested too deeply") from None
    _COMPILED.put((source, output), template)
    return template


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
        # Written as it comes: a million small pieces would take far more memory as objects than as text.
        text = io.StringIO()
        size = 0
        failure: str | None
        try:
            # Streamed, so a runaway template stops at the limit instead of filling memory.
            for chunk in self._template.generate(dict(context)):
                size += len(chunk)
                if size > MAX_OUTPUT_BYTES:
                    raise TransformError("rendered output is over 1 MiB")
                text.write(chunk)
                _tick()
        except Exception as exc:  # anything a tenant's template can make go wrong
            failure = _where(exc) + (str(exc) if isinstance(exc, TransformError) else _describe(exc))
            _release(exc)
        else:
            failure = None
        finally:
            _budget.reset(token)
        if failure is not None:
            raise TransformError(_cut(failure))
        rendered = text.getvalue()
        if len(rendered.encode()) > MAX_OUTPUT_BYTES:
            raise TransformError("rendered output is over 1 MiB")
        return rendered

    def __repr__(self) -> str:
        return f"Transform(output={self.output!r}, source={self.source[:40]!r})"


def _release(exc: BaseException) -> None:
    """Frees what the frames of a failed render hold (up to the budget), now rather than at the next collection.

    Jinja rewrites a template's traceback with frames it runs for the purpose, whose globals hold the
    exception and whose locals hold the template's: a cycle, which the garbage collector frees only
    when it gets round to it, so failing renders in a row could each keep what they built.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        pending += [error.__context__, error.__cause__]
        tb = error.__traceback__
        while tb is not None:
            frame: types.FrameType | None = tb.tb_frame
            while frame is not None:
                if "__jinja_exception__" in frame.f_globals:  # one of Jinja's stand-in frames
                    frame.f_globals.pop("__jinja_exception__")
                    frame.f_locals.clear()
                try:
                    frame.clear()
                except RuntimeError:
                    break  # still executing: this frame and its callers are ours
                frame = frame.f_back
            tb = tb.tb_next


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
