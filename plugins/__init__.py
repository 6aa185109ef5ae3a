"""Switchboard plugins: hook specifications per kind, and the built-in plugins.

A plugin is any module or object with functions marked ``@hookimpl``; a
third-party plugin is a package with an entry point in the group
``switchboard``. See docs/plugins.md.
"""

from plugins.markers import hookimpl, hookspec

__all__ = ["hookimpl", "hookspec"]
