"""The one plugin manager: specs, built-ins, then third-party entry points.

Nothing else creates a plugin manager. :func:`load_registry` collects what the
plugins register into a :class:`PluginRegistry` that services look things up in.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy

from plugins.ai import spec as ai_spec
from plugins.destinations import spec as destination_spec
from plugins.sources import spec as source_spec
from switchboard.settings import Settings

__all__ = ["BUILTIN_PLUGINS", "PluginRegistry", "get_plugin_manager", "load_registry", "UnknownPlugin"]

BUILTIN_PLUGINS = (
    "plugins.sources.generic",
    "plugins.sources.stripe",
    "plugins.sources.github",
    "plugins.sources.slack",
    "plugins.sources.intercom",
    "plugins.sources.twilio",
    "plugins.sources.standard_webhooks",
    "plugins.destinations.webhook",
    "plugins.destinations.slack",
    "plugins.destinations.intercom",
    "plugins.destinations.twilio",
    "plugins.destinations.nats_subject",
    "plugins.ai.local",
    "plugins.ai.anthropic_provider",
    "plugins.ai.openai_provider",
)


class UnknownPlugin(LookupError):
    """No plugin registered that name."""


def get_plugin_manager(load_entrypoints: bool = True) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("switchboard")
    for spec in (source_spec, destination_spec, ai_spec):
        pm.add_hookspecs(spec)
    for name in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    if load_entrypoints:
        pm.load_setuptools_entrypoints("switchboard")
    # An implementation of a hook no spec declares is a typo: fail at start-up.
    pm.check_pending()
    return pm


@dataclass
class PluginRegistry:
    sources: dict[str, Any] = field(default_factory=dict)
    destinations: dict[str, Any] = field(default_factory=dict)
    ai_providers: dict[str, Any] = field(default_factory=dict)

    def source(self, name: str) -> Any:
        return _lookup(self.sources, "source type", name)

    def destination(self, name: str) -> Any:
        return _lookup(self.destinations, "destination", name)

    def ai_provider(self, name: str) -> Any:
        return _lookup(self.ai_providers, "AI provider", name)


def _lookup(table: dict[str, Any], kind: str, name: str) -> Any:
    try:
        return table[name]
    except KeyError:
        raise UnknownPlugin(f"unknown {kind} {name!r}; known: {', '.join(sorted(table)) or 'none'}") from None


def _collector(table: dict[str, Any], kind: str):
    def register(item: Any) -> None:
        name = getattr(item, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"a registered {kind} needs a non-empty str .name, got {item!r}")
        if name in table:
            raise ValueError(f"two plugins register a {kind} named {name!r}")
        table[name] = item

    return register


def load_registry(pm: pluggy.PluginManager | None = None, env: Mapping[str, str] | None = None) -> PluginRegistry:
    """Every plugin's registrations; AI providers read their ``SWITCHBOARD_AI_<PROVIDER>_*`` settings from ``env``
    (default: :attr:`AISettings.provider_variables` of the environment)."""
    pm = pm or get_plugin_manager()
    registry = PluginRegistry()
    pm.hook.register_sources(register=_collector(registry.sources, "source type"))
    pm.hook.register_destinations(register=_collector(registry.destinations, "destination"))
    pm.hook.register_ai_providers(register=_collector(registry.ai_providers, "AI provider"),
                                  settings=ai_spec.ProviderSettings(
                                      Settings.from_env().ai.provider_variables if env is None else env))
    return registry
