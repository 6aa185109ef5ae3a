"""How long a transform's value would be, estimated before it is built (see :mod:`services.router.transforms`).

Every function here answers without building the value it measures, and each answer is an upper
bound (or near enough: a few characters of quoting) of its length in characters, or in items for
a list. Once a walk knows the answer is over ``limit`` it stops and returns a number over it, so
measuring costs at most about ``limit`` steps whatever the value is (a list holding the same
megabyte a thousand times is measured in a few steps, and found too long).
"""

from __future__ import annotations

import operator
import re
import string
from collections.abc import ItemsView, KeysView, Mapping, ValuesView
from typing import Any
from collections.abc import Callable

import jinja2
from jinja2.utils import Namespace
from markupsafe import Markup

__all__ = ["text_length", "printf_length", "format_length", "FILTER_LENGTHS", "METHOD_LENGTHS", "WORD_FILTERS"]

# repr(str) escapes a character into at most 10 ("\U000e0001"); measured by chunks to avoid a big copy.
_CHUNK = 65_536
# The most characters a float takes with %f, %e or %g (1e308 has 309 digits) plus a default precision.
_FLOAT_CHARS = 330
# What str.splitlines() splits at.
_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
# markupsafe's escape writes at most 5 characters for one ("&" is "&amp;", '"' is "&#34;").
_ESCAPED = 5


def _quoted_length(text: str) -> int:
    """len(repr(text)), or a little over it."""
    if text.isprintable():
        return len(text) + 2 + text.count("\\") + text.count("'")
    return sum(len(repr(text[i:i + _CHUNK])) - 2 for i in range(0, len(text), _CHUNK)) + 2 + text.count("'")


def _int_length(number: int) -> int:
    return number.bit_length() * 30103 // 100_000 + 2  # log10(2) digits a bit, and a sign


def text_length(value: Any, limit: int, *, pretty: bool = False) -> int:
    """len(str(value)) (``pretty``: of pprint's rendering), or some number over ``limit`` once it must be over."""
    if isinstance(value, str):
        return len(value)
    if value is None or isinstance(value, jinja2.Undefined):
        return 9
    total = 0
    # (value, indent): pprint puts a nested value on its own line, indented by its position.
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, indent = stack.pop()
        if pretty:
            total += indent + 1
        kind = type(item)  # the JSON types first, by exact type: this runs for every value of a payload
        if kind is str:
            if len(item) > limit:
                return len(item)
            total += len(item) + 2 + item.count("\\") + item.count("'") if item.isprintable() else _quoted_length(item)
        elif kind is int:
            total += item.bit_length() * 30103 // 100_000 + 2
        elif kind is float or kind is bool or item is None:
            total += 24
        elif kind is list or kind is tuple:
            total += 3 + 2 * len(item)  # brackets, ", " between items, a 1-tuple's comma
            if total > limit:
                return total
            for entry in item:
                if type(entry) is str and not pretty and len(entry) <= limit and entry.isprintable():
                    total += len(entry) + 2 + entry.count("\\") + entry.count("'")
                    if total > limit:
                        return total
                else:
                    stack.append((entry, indent + 1))
        elif isinstance(item, (Mapping, Namespace)):
            entries = item._Namespace__attrs if isinstance(item, Namespace) else item
            total += 2 + 4 * len(entries) + (12 if isinstance(item, Namespace) else 0)  # ": ", ", ", <Namespace >
            for key, entry in entries.items():
                key_length = text_length(key, limit) + 2
                total += key_length
                stack.append((entry, indent + key_length + 1))
                if total > limit:
                    return total
        elif isinstance(item, str):  # Markup and other str types
            if len(item) > limit:
                return len(item)
            total += _quoted_length(item) + 10
        elif isinstance(item, int):
            total += _int_length(item)
        elif isinstance(item, (bytes, bytearray)):
            total += 4 * len(item) + 3
        elif isinstance(item, (list, tuple, set, frozenset, KeysView, ValuesView, ItemsView)):
            total += 14 + 2 * len(item)
            if total > limit:
                return total
            stack.extend((entry, indent + 1) for entry in item)
        elif isinstance(item, range):
            total += 20 + _int_length(item.start) + _int_length(item.stop) + _int_length(item.step)
        elif isinstance(item, jinja2.Undefined):
            total += 9
        else:
            total += len(repr(item))  # the runtime's own objects (loops, macros, methods): short
        if total > limit:
            return total
    return total


def _index(value: Any) -> int:
    return operator.index(value) if not isinstance(value, bool) else int(value)


_PRINTF = re.compile(r"%(?:\(([^)]*)\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?(.)", re.S)


def printf_length(template: Any, values: Any, limit: int) -> int:
    """len(template % values) for a str or bytes template, or over ``limit``."""
    total = len(template)
    if isinstance(template, bytes):
        template = template.decode("latin-1")
    if isinstance(values, tuple):
        arguments = list(values)
    elif isinstance(values, Mapping):
        arguments = []
    else:
        arguments = [values]
    numbers = [abs(_index(a)) for a in arguments if isinstance(a, int)]
    widest_number = max(numbers, default=0)
    for match in _PRINTF.finditer(template):
        key, width, precision, conversion = match.groups()
        if conversion == "%":
            continue
        for size in (width, precision):
            if size == "*":
                total += widest_number
            elif size:
                total += int(size) if len(size) < 12 else limit + 1
        if conversion in "eEfFgG":
            total += _FLOAT_CHARS
        if isinstance(values, Mapping):  # each %(key)s its value; a bare %s the mapping itself
            total += (text_length(values.get(key) if key is not None else values, limit)
                      * (10 if conversion == "a" else 1))
        if total > limit:
            return total
    total += sum(text_length(a, limit) for a in arguments) * (10 if "%a" in template else 1)
    if isinstance(template, Markup):
        total *= _ESCAPED
    return total


_SPEC_NUMBERS = re.compile(r"\d+")


def format_length(template: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], limit: int) -> int:
    """len(template.format(*args, **kwargs)), or over ``limit`` (also when the template does not parse)."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        return 0  # the call fails the same way
    longest = max((text_length(v, limit) for v in (*args, *kwargs.values())), default=0)
    numbers = [abs(_index(v)) for v in (*args, *kwargs.values()) if isinstance(v, int)]
    total = 0
    for literal, name, spec, _conversion in fields:
        total += len(literal)
        if name is None:
            continue
        spec = spec or ""
        total += longest * (2 if "," in spec or "_" in spec else 1)  # digits grouped
        if "{" in spec:  # a nested field: its number can be any of the arguments
            total += max(numbers, default=0) * 2 + len(spec)
        total += sum(int(n) if len(n) < 12 else limit + 1 for n in _SPEC_NUMBERS.findall(spec))
        if spec[-1:] in ("e", "E", "f", "F", "g", "G", "%", "n"):
            total += _FLOAT_CHARS
        if total > limit:
            return total
    return total * (_ESCAPED if isinstance(template, Markup) else 1)


def _str(value: Any, limit: int) -> int:
    return text_length(value, limit)


# Filter name -> the length of its result from (value, *args, **kwargs) and the limit. Filters not
# here return at most a few times their input's length, which is checked (and charged) as it is.
def _center(value: Any, width: Any = 80, *, limit: int) -> int:
    return max(_str(value, limit), _index(width))


def _indent(value: Any, width: Any = 4, first: bool = False, blank: bool = False, *, limit: int) -> int:
    text = value if isinstance(value, str) else ""
    pad = len(width) if isinstance(width, str) else _index(width)
    return _str(value, limit) + (sum(text.count(c) for c in _LINE_BREAKS) + 1) * max(pad, 0)


def _format(value: Any, *args: Any, limit: int, **kwargs: Any) -> int:
    if args and kwargs:
        return 0  # Jinja refuses both
    return printf_length(str(value) if not isinstance(value, str) else value, kwargs or args, limit)


def _replace(value: Any, old: Any, new: Any, count: Any = None, *, limit: int) -> int:
    text = value if isinstance(value, str) else ""
    old, new = str(old), str(new)
    found = len(text) + 1 if old == "" else text.count(old)
    if count is not None and _index(count) >= 0:
        found = min(found, _index(count))
    return _str(value, limit) + found * max(0, len(new) - len(old)) * (_ESCAPED if isinstance(value, Markup) else 1)


def _wordwrap(value: Any, width: Any = 79, break_long_words: bool = True, wrapstring: Any = None,
              break_on_hyphens: bool = True, *, limit: int) -> int:
    length = _str(value, limit)
    text = value if isinstance(value, str) else ""
    # A line ends only when the next word does not fit, so two lines hold at least ``width`` characters.
    lines = min(length + 1, 2 * length // max(_index(width), 1) + text.count("\n") + 2)
    return length + lines * len(str(wrapstring) if wrapstring is not None else "\n")


def _batch(value: Any, linecount: Any, fill_with: Any = None, *, limit: int) -> int:
    return _index(linecount) if fill_with is not None else 0


def _slice(value: Any, slices: Any, fill_with: Any = None, *, limit: int) -> int:
    return _index(slices)


def _escaped(value: Any, *args: Any, limit: int, **kwargs: Any) -> int:
    return _str(value, limit) * _ESCAPED


def _urlencode(value: Any, *, limit: int) -> int:
    return _str(value, limit) * 12  # a character is up to 4 UTF-8 bytes, each %XX


def _urlize(value: Any, *args: Any, limit: int, **kwargs: Any) -> int:
    return _str(value, limit) * 12 + 200  # a link repeats its text in the href, escaped, with attributes


def _xmlattr(value: Any, autospace: bool = True, *, limit: int) -> int:
    return _str(value, limit) * _ESCAPED + 1


def _pprint(value: Any, *, limit: int) -> int:
    return text_length(value, limit, pretty=True)


FILTER_LENGTHS: dict[str, Callable[..., int]] = {
    "center": _center, "indent": _indent, "format": _format, "replace": _replace, "wordwrap": _wordwrap,
    "batch": _batch, "slice": _slice, "escape": _escaped, "e": _escaped, "forceescape": _escaped,
    "urlencode": _urlencode, "urlize": _urlize, "xmlattr": _xmlattr, "pprint": _pprint,
}

#: Filters that split their text into words as they work, holding an object per word for a moment.
WORD_FILTERS = frozenset({"wordwrap", "title", "striptags", "urlize", "wordcount"})


# Methods of str and bytes -> the length of their result from (self, *args, **kwargs) and the limit.
# A method not here returns at most three times its length (upper() of "ß" is "SS"; hex() is 2 or 3).
def _justified(self: Any, width: Any, *args: Any, limit: int) -> int:
    return max(len(self), _index(width))


def _expandtabs(self: Any, tabsize: Any = 8, *, limit: int) -> int:
    tab = "\t" if isinstance(self, str) else b"\t"
    return len(self) + self.count(tab) * max(_index(tabsize), 0)


def _method_replace(self: Any, old: Any, new: Any, count: Any = -1, *, limit: int) -> int:
    found = len(self) + 1 if len(old) == 0 else self.count(old)
    if _index(count) >= 0:
        found = min(found, _index(count))
    return len(self) + found * max(0, len(new) - len(old))


def _translate(self: Any, table: Any, *args: Any, limit: int) -> int:
    if isinstance(table, Mapping):
        longest = max((len(v) for v in table.values() if isinstance(v, (str, bytes))), default=1)
        return len(self) * max(longest, 1)
    return len(self)


def _encode(self: Any, *args: Any, limit: int, **kwargs: Any) -> int:
    return len(self) * 10 + 16  # unicode_escape writes up to 10 bytes for a character


def _split(self: Any, sep: Any = None, maxsplit: Any = -1, *, limit: int) -> int:
    if sep is None:
        pieces = len(self) // 2 + 1
    elif len(sep) == 0:
        return 0  # refused by Python
    else:
        pieces = self.count(sep) + 1
    if _index(maxsplit) >= 0:
        pieces = min(pieces, _index(maxsplit) + 1)
    return pieces



def _splitlines(self: Any, keepends: bool = False, *, limit: int) -> int:
    if isinstance(self, bytes):
        return self.count(b"\n") + self.count(b"\r") + 1
    return sum(self.count(c) for c in _LINE_BREAKS) + 1


def _to_bytes(self: Any, length: Any = 1, *args: Any, limit: int, **kwargs: Any) -> int:
    return _index(length)


METHOD_LENGTHS: dict[str, Callable[..., int]] = {
    "center": _justified, "ljust": _justified, "rjust": _justified, "zfill": _justified,
    "expandtabs": _expandtabs, "replace": _method_replace, "translate": _translate, "encode": _encode,
    "split": _split, "rsplit": _split, "splitlines": _splitlines, "to_bytes": _to_bytes,
}

#: Methods whose result is a list of new strings: each piece is an object, charged as such.
SPLITTING_METHODS = frozenset({"split", "rsplit", "splitlines"})
