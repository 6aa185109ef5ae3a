"""Checks for a destination's ``config``, with messages that name the key at fault.

Every failure raises :class:`InvalidEndpointConfig` (400 at endpoint creation).
"""

from __future__ import annotations

from typing import Any
from collections.abc import Collection, Mapping

from plugins.destinations.spec import InvalidEndpointConfig

__all__ = ["config_of", "optional_string", "required_secret", "required_string"]


def config_of(config: Any, destination: str, allowed: Collection[str]) -> Mapping[str, Any]:
    """``config`` itself, once it is an object whose keys are all in ``allowed``."""
    if not isinstance(config, Mapping):
        raise InvalidEndpointConfig(f"config of a {destination} endpoint must be an object")
    unknown = sorted(str(key) for key in config if key not in allowed)
    if unknown:
        raise InvalidEndpointConfig(
            f"unknown config keys for a {destination} endpoint: {', '.join(unknown)}"
            f" (known: {', '.join(sorted(allowed))})"
        )
    return config


def optional_string(config: Mapping[str, Any], key: str) -> str | None:
    """The non-blank string at ``key``, or None when the key is absent or null."""
    value = config.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidEndpointConfig(f"config.{key} must be a non-empty string")
    if not value.isprintable():
        raise InvalidEndpointConfig(f"config.{key} must not contain control characters")
    return value


def required_string(config: Mapping[str, Any], key: str) -> str:
    """The non-blank string at ``key``; missing is an error."""
    value = optional_string(config, key)
    if value is None:
        raise InvalidEndpointConfig(f"config.{key} is required")
    return value


def required_secret(config: Mapping[str, Any], key: str) -> str:
    """A token or password at ``key``: required, printable ASCII without spaces.

    It goes into a request header, so anything else could never be sent.
    The message never repeats the value.
    """
    value = required_string(config, key)
    if not value.isascii() or any(ch.isspace() for ch in value):
        raise InvalidEndpointConfig(f"config.{key} must be ASCII without spaces")
    return value
