"""``switchboard plugins new``: an installable plugin package to start from, one per kind.

The templates beside this module (``*.tmpl``, package data) are rendered with
:class:`string.Template`; each kind's package registers one working example
plugin through the same hook the built-ins use, and its tests run the
contract tests of :mod:`switchboard.testing`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from string import Template

__all__ = ["KINDS", "PluginNames", "ScaffoldError", "plugin_names", "scaffold"]

TEMPLATES = Path(__file__).resolve().parent
#: Each kind, with its words in the generated text and its template files' stem.
KINDS = {"source": "source type", "destination": "destination", "ai-provider": "AI provider"}
_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
# An AI provider's name is also in its settings' variable names (SWITCHBOARD_AI_<NAME>_API_KEY): no hyphen.
_AI_NAME = re.compile(r"^[a-z][a-z0-9]*$")
_MAX_NAME = 40


class ScaffoldError(ValueError):
    """The plugin cannot be made as asked (a bad name, a directory in use)."""


@dataclass(frozen=True)
class PluginNames:
    """Everything a template names, made from the plugin's name (``acme-pay``)."""

    name: str  # what the plugin registers: acme-pay
    kind: str  # source, destination or ai-provider
    kind_text: str  # "source type"
    package: str  # switchboard_acme_pay
    distribution: str  # switchboard-acme-pay
    class_prefix: str  # AcmePay
    settings_name: str  # ACME_PAY, as in SWITCHBOARD_AI_ACME_PAY_API_KEY


def plugin_names(kind: str, name: str) -> PluginNames:
    """The names of a new plugin; ScaffoldError for an unknown kind or a name that cannot be one."""
    if kind not in KINDS:
        raise ScaffoldError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    pattern = _AI_NAME if kind == "ai-provider" else _NAME
    if len(name) > _MAX_NAME or not pattern.match(name):
        allowed = ("lower-case letters and digits, starting with a letter (it is in the provider's settings, "
                   "SWITCHBOARD_AI_<NAME>_*)" if kind == "ai-provider" else
                   "lower-case letters, digits and single hyphens, starting with a letter")
        raise ScaffoldError(f"invalid {KINDS[kind]} name {name!r}: {allowed}, at most {_MAX_NAME} characters")
    snake = name.replace("-", "_")
    return PluginNames(name=name, kind=kind, kind_text=KINDS[kind], package=f"switchboard_{snake}",
                       distribution=f"switchboard-{name}", class_prefix="".join(p.title() for p in name.split("-")),
                       settings_name=snake.upper())


def scaffold(names: PluginNames, directory: Path) -> list[Path]:
    """Write the package into ``directory`` (made if missing; ScaffoldError unless empty); the files written."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ScaffoldError(f"{directory} already exists and is not an empty directory")
    values = asdict(names)
    stem = names.kind
    files = {
        Path("pyproject.toml"): "pyproject.toml.tmpl",
        Path("README.md"): "README.md.tmpl",
        Path(names.package) / "__init__.py": f"{stem}.py.tmpl",
        Path("tests") / f"test_{names.package.removeprefix('switchboard_')}.py": f"{stem}_test.py.tmpl",
    }
    written = []
    for target, template in files.items():
        text = Template((TEMPLATES / template).read_text()).substitute(values, dependencies=_DEPENDENCIES[stem])
        path = directory / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


# What the example needs beyond the environment Switchboard runs in.
_DEPENDENCIES = {"source": "[]", "destination": "[]", "ai-provider": '["httpx>=0.27"]'}
