import subprocess
import sys
from pathlib import Path

import pytest

from plugins import hookimpl
from plugins.manager import UnknownPlugin, get_plugin_manager, load_registry


def test_built_in_plugins_register_through_the_hooks() -> None:
    registry = load_registry()
    assert registry.source("generic").name == "generic"
    assert registry.destination("webhook").name == "webhook"
    assert registry.ai_provider("local").name == "local"
    with pytest.raises(UnknownPlugin, match="known: generic, github"):
        registry.source("nope")


def test_a_plugin_can_add_a_source_type() -> None:
    class Echo:
        name = "echo"

    class EchoPlugin:
        @hookimpl
        def register_sources(self, register):
            register(Echo())

    pm = get_plugin_manager(load_entrypoints=False)
    plugin = EchoPlugin()
    pm.register(plugin)
    try:
        assert set(load_registry(pm).sources) == {"generic", "stripe", "github", "slack", "intercom", "twilio",
                                                  "standard-webhooks", "echo"}
    finally:
        pm.unregister(plugin)


def test_two_plugins_claiming_one_name_is_an_error() -> None:
    class Clash:
        @hookimpl
        def register_destinations(self, register):
            register(type("Webhook", (), {"name": "webhook"})())

    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(Clash())
    with pytest.raises(ValueError, match="two plugins register a destination named 'webhook'"):
        load_registry(pm)


def test_a_misspelled_hook_fails_at_start_up() -> None:
    class Typo:
        @hookimpl
        def register_source(self, register):  # missing "s"
            pass

    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(Typo())
    with pytest.raises(Exception, match="unknown hook 'register_source'"):
        pm.check_pending()


def test_loading_the_plugins_imports_no_ai_sdk_until_a_provider_has_a_key() -> None:
    """The anthropic and openai SDKs take over a second of CPU to import: every process that loads the
    plugins (delivery, ingest, the edge) paid it at start for providers only AIService calls."""
    probe = ("import sys; from plugins.manager import load_registry; sdks = {'anthropic', 'openai'}; "
             "load_registry(env={}); print(sorted(sdks & set(sys.modules))); "
             "load_registry(env={'SWITCHBOARD_AI_ANTHROPIC_API_KEY': 'sk-ant-x'}); "
             "print(sorted(sdks & set(sys.modules)))")
    lines = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                           cwd=Path(__file__).parents[2]).stdout.splitlines()
    assert lines == ["[]", "['anthropic']"], lines
