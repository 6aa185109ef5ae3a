"""``extract``: the properties of an output schema, filled from an event.

Each property of ``output_schema`` is looked for in the payload (breadth
first, capped): a key whose normalised name (case, ``_``, ``-`` and camelCase
ignored) equals the property name, or its path does (``customer_email``
matches ``{"customer": {"email": ...}}``), or a synonym does (``_SYNONYMS``:
email/e-mail/mail, amount/total/price, id, phone/mobile, url/link…), or the
key ends with the property name. Candidates are tried best first and coerced
to the schema type (string, number, integer, boolean, an enum's values;
nested objects and arrays recursively). When none fits and the property name
suggests it, regexes over the text find an email, phone number, URL, money
amount, order or invoice id. What is not found is left out, unless required:
then null if the schema allows it, else ``ProviderError(retryable=False)`` so
the host asks the next provider.
"""

from __future__ import annotations

import re
from typing import Any
from collections.abc import Mapping

from plugins.ai.local.reading import MAX_LEAF, MAX_TEXT, clean, walk
from plugins.ai.spec import EventInput, ProviderError

def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_SYNONYM_GROUPS = (
    ("email", "emailaddress", "mail", "customeremail", "receiptemail", "contactemail", "useremail"),
    ("amount", "total", "amounttotal", "amountdue", "price", "sum", "grandtotal", "value", "cost"),
    ("id", "identifier", "uid", "uuid", "key"),
    ("phone", "phonenumber", "mobile", "tel", "telephone", "from", "msisdn"),
    ("name", "fullname", "displayname"),
    ("url", "link", "href", "htmlurl", "website", "uri"),
    ("orderid", "ordernumber", "orderno", "order"),
    ("invoiceid", "invoicenumber", "invoiceno", "invoice"),
    ("message", "text", "body", "content", "comment"),
    ("title", "subject", "headline"),
    ("customer", "customerid", "client", "clientid"),
    ("company", "organization", "organisation", "org", "companyname"),
    ("status", "state"),
    ("currency", "currencycode"),
    ("date", "createdat", "created", "timestamp", "time"),
)
_SYNONYMS = {word: set(group) - {word} for group in _SYNONYM_GROUPS for word in group}
_CANONICAL = {word: group[0] for group in _SYNONYM_GROUPS for word in group}

_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
# International (+…) or North American (555 867 5310) numbers; not dates or ids.
_PHONE_RE = re.compile(r"(?<![\w+])(?:\+\d[\d\s().\-]{7,17}\d|\(?\d{3}\)?[\s.\-]\d{3}[\s.\-]\d{4})(?![\w])")
_URL_RE = re.compile(r"https?://[^\s<>\"')]+")
_MONEY_RE = re.compile(r"(?:[$€£¥]\s?\d[\d,]*(?:\.\d+)?|\d[\d,]*(?:\.\d+)?\s?(?:USD|EUR|GBP|CAD|AUD|JPY|CHF)\b)")
_ORDER_RE = re.compile(r"(?:#[A-Z0-9][A-Z0-9\-]{2,}|\bord_[A-Za-z0-9]+|\border\s+(?:no\.?\s*|number\s*)?#?\d[\w\-]*)",
                       re.IGNORECASE)
_INVOICE_RE = re.compile(r"\b(?:INV[-_ ]?[\w\-]*\d[\w\-]*|in_[A-Za-z0-9]{6,})\b")
_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def _fallback(name: str) -> re.Pattern[str] | None:
    if "email" in name or "mail" in name:
        return _EMAIL_RE
    if "phone" in name or "mobile" in name or name in ("tel", "telephone"):
        return _PHONE_RE
    if "url" in name or "link" in name or "website" in name:
        return _URL_RE
    if "invoice" in name:
        return _INVOICE_RE
    if "order" in name:
        return _ORDER_RE
    if any(w in name for w in ("amount", "total", "price", "cost")):
        return _MONEY_RE
    return None


def _types(schema: Mapping[str, Any]) -> list[str]:
    kind = schema.get("type")
    kinds = ([kind] if isinstance(kind, str)
             else [k for k in kind if isinstance(k, str)] if isinstance(kind, list)
             else [])
    for option in schema.get("anyOf", ()) or schema.get("oneOf", ()) or ():
        if isinstance(option, Mapping):
            kinds.extend(_types(option))
    if not kinds and "properties" in schema:
        kinds = ["object"]
    if not kinds and isinstance(schema.get("enum"), list):
        kinds = ["enum"]
    return kinds


def _allows_null(schema: Mapping[str, Any]) -> bool:
    return "null" in _types(schema) or schema.get("nullable") is True or (
        isinstance(schema.get("enum"), list) and None in schema["enum"])


_MISSING = object()


def _to_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        match = _NUMBER_RE.search(value)
        if match and len(value.strip()) <= 40:
            try:
                return float(match.group().replace(",", ""))
            except ValueError:
                return None
    return None


def _coerce(value: Any, schema: Mapping[str, Any]) -> Any:
    """``value`` as the schema's type, or ``_MISSING`` when it cannot be."""
    kinds = [k for k in _types(schema) if k != "null"] or ["any"]
    enum = schema.get("enum")
    for kind in kinds:
        result: Any = _MISSING
        if kind == "string" and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            result = value if isinstance(value, str) else str(value)
            result = result.strip() or _MISSING
        elif kind == "number":
            number = _to_number(value)
            result = _MISSING if number is None else (int(number) if number.is_integer() else number)
        elif kind == "integer":
            number = _to_number(value)
            result = int(number) if number is not None and number.is_integer() else _MISSING
        elif kind == "boolean":
            if isinstance(value, bool):
                result = value
            elif isinstance(value, (str, int)):
                lowered = str(value).strip().lower()
                result = True if lowered in ("true", "yes", "1", "y", "on") else \
                    False if lowered in ("false", "no", "0", "n", "off") else _MISSING
        elif kind == "object" and isinstance(value, Mapping):
            result = _fill(value, schema, text="", strict=False, depth=3) or _MISSING
        elif kind == "array" and isinstance(value, list):
            items = schema.get("items") if isinstance(schema.get("items"), Mapping) else {}
            coerced = [_coerce(v, items) if items else v for v in value[:100]]
            result = [v for v in coerced if v is not _MISSING]
        elif kind in ("any", "enum") and isinstance(value, (str, int, float, bool)):
            result = value
        if result is not _MISSING and isinstance(enum, list) and result not in enum:
            by_lowered = {str(e).lower(): e for e in enum}
            result = by_lowered.get(str(result).lower(), _MISSING)
        if result is not _MISSING:
            return result
    return _MISSING


def _candidates(payload: Any, name: str) -> list[Any]:
    """Values under keys that match ``name``, best match first, shallowest first."""
    target = _norm(name)
    synonyms = _SYNONYMS.get(target, set())
    ranked: list[tuple[int, int, Any]] = []
    for order, (path, value) in enumerate(walk(payload)):
        if not path:
            continue
        names = [_norm(p) for p in path]
        key = names[-1]
        if key == target or "".join(names[-2:]) == target or "".join(names[-3:]) == target:
            rank = 0
        elif key in synonyms or (len(names) > 1 and names[-2] + _CANONICAL.get(key, key) == target):
            rank = 1  # a synonym: "total" for "amount"; "customer"/"fullName" for "customer_name"
        elif len(target) >= 4 and key.endswith(target):
            rank = 2  # "customer_email" for "email"
        else:
            continue
        ranked.append((rank, order, value))
    ranked.sort(key=lambda item: (item[0], item[1]))
    return [value for _, _, value in ranked]


def _fill(payload: Any, schema: Mapping[str, Any], text: str, strict: bool = True, depth: int = 0,
          prefix: str = "") -> dict[str, Any]:
    """The schema's properties from ``payload``; ``strict``: a missing required one raises, else gives ``{}``.

    ``prefix`` names the object property being filled from the whole event: its ``id`` is then looked
    for as ``customer_id``, never as any ``id``.
    """
    properties = schema.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    required = [r for r in schema.get("required", ()) if isinstance(r, str)]
    result: dict[str, Any] = {}
    for name, subschema in properties.items():
        subschema = subschema if isinstance(subschema, Mapping) else {}
        value: Any = _MISSING
        for candidate in _candidates(payload, f"{prefix}_{name}" if prefix else name):
            value = _coerce(candidate, subschema)
            if value is not _MISSING:
                break
        if value is _MISSING and "object" in _types(subschema) and depth < 3:
            # A nested object with no key of its own name: its properties come from the whole event.
            value = _fill(payload, subschema, "", strict=False, depth=depth + 1,
                          prefix=f"{prefix}_{name}" if prefix else name) or _MISSING
        if value is _MISSING and text and not prefix:
            pattern = _fallback(_norm(name))
            if pattern is not None:
                for match in pattern.finditer(text):
                    value = _coerce(match.group().strip().rstrip(".,;:!?"), subschema)
                    if value is not _MISSING:
                        break
        if value is not _MISSING:
            result[name] = value
    for name in required:
        if name in result:
            continue
        subschema = properties.get(name)
        subschema = subschema if isinstance(subschema, Mapping) else {}
        if _allows_null(subschema):
            result[name] = None
        elif strict:
            raise ProviderError(f"the local provider found no value for required property {name!r}",
                                retryable=False)
        else:
            return {}
    return result


def _extraction_text(event: EventInput) -> str:
    """What the regexes search: the event's text, then the payload's strings as they are, capped."""
    pieces = [clean(event.text[:MAX_TEXT])] if event.text else []
    size = len(pieces[0]) if pieces else 0
    for _, value in walk(event.payload):
        if isinstance(value, str) and size < MAX_TEXT:
            value = value[:MAX_LEAF]
            pieces.append(value)
            size += len(value) + 1
    return "\n".join(pieces)


def extract(event: EventInput, schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema's properties filled from the event; ProviderError when a required one is missing."""
    if not isinstance(schema, Mapping) or not isinstance(schema.get("properties"), Mapping):
        raise ProviderError('the local provider needs an output schema with "properties"', retryable=False)
    return _fill(event.payload, schema, _extraction_text(event))
