"""The plugins as the services see them, looked up once per test session."""

from __future__ import annotations

from functools import cache

from plugins.manager import PluginRegistry, load_registry

__all__ = ["installed_registry"]


@cache
def installed_registry() -> PluginRegistry:
    """Every built-in and every installed entry point's registrations; AI providers get no settings
    (a contract builds the provider it tests with settings of its own)."""
    return load_registry(env={})
