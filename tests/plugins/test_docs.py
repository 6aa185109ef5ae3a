"""The plugin author guide must describe every hook plugins can implement."""

from pathlib import Path

from plugins.manager import get_plugin_manager

GUIDE = Path(__file__).parents[2] / "docs" / "plugins.md"


def test_every_hook_is_in_the_plugin_guide() -> None:
    guide = GUIDE.read_text()
    hooks = [name for name in dir(get_plugin_manager(load_entrypoints=False).hook) if not name.startswith("_")]
    assert hooks, "no hooks found"
    missing = [name for name in hooks if f"`{name}(register" not in guide]
    assert missing == []
