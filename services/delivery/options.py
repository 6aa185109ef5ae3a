"""Per-endpoint delivery options: how hard, how fast and how often to try.

Stored in the endpoint's ``options``; anything not set falls back to the
deployment's defaults (settings). Validated at creation with clear 400s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from collections.abc import Mapping

from services.delivery.ordering import KeyPath, parse_key_path
from services.delivery.retry import RetryPolicy
from switchboard.errors import InvalidRequest
from switchboard.ratelimit import RateLimit

__all__ = ["EndpointOptions", "parse_options", "validate_options"]

_KEYS = {"max_in_flight", "rate_limit", "timeout_seconds", "retry", "auto_disable_after_seconds", "ordering",
         "ordering_key"}
ORDERINGS = ("none", "per_key")
_RETRY_KEYS = {"max_attempts", "initial_delay_seconds", "max_delay_seconds", "multiplier", "jitter",
               "retry_statuses"}


@dataclass(frozen=True)
class EndpointOptions:
    # Deliveries to this endpoint in flight at once on this machine (each of K
    # delivery processes takes ceil(max_in_flight / K)): a slow receiver can
    # hold no more than this many of the processes' slots.
    max_in_flight: int
    rate_limit: RateLimit | None
    timeout_s: float
    retry: RetryPolicy
    # Failing without a success this long disables the endpoint; 0: never.
    auto_disable_after_s: float = 0.0
    # HTTP statuses retried; None: the destination's own choice.
    retry_statuses: frozenset[int] | None = None
    # ordering "per_key": where each delivery's key is read (services/delivery/ordering.py); None: unordered.
    ordering_key: KeyPath | None = None


def _number(config: Mapping[str, Any], key: str, low: float, high: float, integer: bool = False,
            within: str = "options") -> float | None:
    value = config.get(key)
    if value is None:
        return None
    field = f"{within}.{key}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise InvalidRequest(f"{key} must be {'an integer' if integer else 'a number'}", field=field)
    if not low <= value <= high:
        raise InvalidRequest(f"{key} must be between {low:g} and {high:g}", field=field)
    return value


def validate_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """The endpoint options as given, checked; InvalidRequest otherwise."""
    if not isinstance(config, Mapping):
        raise InvalidRequest("options must be an object", field="options")
    unknown = set(config) - _KEYS
    if unknown:
        raise InvalidRequest(f"unknown endpoint options: {', '.join(sorted(unknown))}", field="options")
    _number(config, "max_in_flight", 1, 1000, integer=True)
    _number(config, "timeout_seconds", 1, 60)
    _number(config, "auto_disable_after_seconds", 0, 90 * 86_400)
    rate = config.get("rate_limit")
    if rate is not None:
        if not isinstance(rate, Mapping) or set(rate) - {"per_second", "burst"}:
            raise InvalidRequest('rate_limit is {"per_second": n, "burst": n}', field="options.rate_limit")
        _number(rate, "per_second", 0.001, 100_000, within="options.rate_limit")
        _number(rate, "burst", 1, 100_000, integer=True, within="options.rate_limit")
        if "per_second" not in rate:
            raise InvalidRequest("rate_limit needs per_second", field="options.rate_limit.per_second")
    retry = config.get("retry")
    if retry is not None:
        if not isinstance(retry, Mapping) or set(retry) - _RETRY_KEYS:
            raise InvalidRequest(f"retry takes {', '.join(sorted(_RETRY_KEYS))}", field="options.retry")
        for key, low, high in (("max_attempts", 1, 50), ("initial_delay_seconds", 0.01, 86_400),
                               ("max_delay_seconds", 0.01, 7 * 86_400), ("multiplier", 1, 10), ("jitter", 0, 1)):
            _number(retry, key, low, high, integer=key == "max_attempts", within="options.retry")
        statuses = retry.get("retry_statuses")
        if statuses is not None and (
            not isinstance(statuses, list) or len(statuses) > 100
            or not all(isinstance(c, int) and not isinstance(c, bool) and 400 <= c <= 599 for c in statuses)
        ):
            raise InvalidRequest("retry_statuses is a list of HTTP statuses from 400 to 599",
                                 field="options.retry.retry_statuses")
    ordering = config.get("ordering")
    if ordering is not None and ordering not in ORDERINGS:
        raise InvalidRequest(f"ordering is one of {', '.join(ORDERINGS)}", field="options.ordering")
    key_path = config.get("ordering_key")
    if ordering == "per_key" and not key_path:
        raise InvalidRequest('ordering "per_key" needs ordering_key, a JSON path such as $.data.object.customer',
                             field="options.ordering_key")
    if key_path is not None and key_path != "":
        if ordering != "per_key":
            raise InvalidRequest('ordering_key is used with ordering "per_key"', field="options.ordering_key")
        if not isinstance(key_path, str):
            raise InvalidRequest("ordering_key must be a string", field="options.ordering_key")
        try:
            parse_key_path(key_path)
        except ValueError as exc:
            raise InvalidRequest(f"ordering_key: {exc}", field="options.ordering_key") from None
    return dict(config)


def parse_options(config: Mapping[str, Any], defaults: EndpointOptions) -> EndpointOptions:
    rate = config.get("rate_limit")
    retry = config.get("retry") or {}
    return EndpointOptions(
        max_in_flight=config.get("max_in_flight", defaults.max_in_flight),
        rate_limit=RateLimit.of(rate["per_second"], rate.get("burst")) if rate else defaults.rate_limit,
        timeout_s=config.get("timeout_seconds", defaults.timeout_s),
        retry=RetryPolicy(
            max_attempts=retry.get("max_attempts", defaults.retry.max_attempts),
            base_delay_s=retry.get("initial_delay_seconds", defaults.retry.base_delay_s),
            max_delay_s=retry.get("max_delay_seconds", defaults.retry.max_delay_s),
            jitter=retry.get("jitter", defaults.retry.jitter),
            multiplier=retry.get("multiplier", defaults.retry.multiplier),
        ),
        auto_disable_after_s=config.get("auto_disable_after_seconds", defaults.auto_disable_after_s),
        retry_statuses=frozenset(retry["retry_statuses"]) if "retry_statuses" in retry else defaults.retry_statuses,
        ordering_key=parse_key_path(config["ordering_key"]) if config.get("ordering") == "per_key" else None,
    )
