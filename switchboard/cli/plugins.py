"""``switchboard plugins list``, ``switchboard plugins new`` and ``switchboard send-sample``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import httpx

from plugins.ai.spec import ProviderSettings
from plugins.manager import BUILTIN_PLUGINS, get_plugin_manager, load_registry
from switchboard.cli.scaffold import KINDS, ScaffoldError, plugin_names, scaffold
from switchboard.settings import Settings
from switchboard.cli.supervisor import edge_url

__all__ = ["add_commands", "SAMPLES"]

# Realistic sample bodies per source type (shared with the tests).
SAMPLES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "sources"
_HOOKS = {"register_sources": "source", "register_destinations": "destination",
          "register_ai_providers": "ai-provider"}


def _origin(pm, plugin) -> str:
    name = pm.get_name(plugin)
    if name in BUILTIN_PLUGINS:
        return f"built-in ({name})"
    for candidate, dist in pm.list_plugin_distinfo():
        if candidate is plugin:
            return f"{dist.project_name} {dist.version} (entry point)"
    return name or repr(plugin)


def _list(args: argparse.Namespace, settings: Settings) -> int:
    pm = get_plugin_manager()
    rows = []
    for hook, kind in _HOOKS.items():
        for impl in getattr(pm.hook, hook).get_hookimpls():
            registered: list = []
            offered = {"register": registered.append, "settings": ProviderSettings(settings.ai.provider_variables)}
            impl.function(**{name: offered[name] for name in impl.argnames})
            for item in registered:
                rows.append({"kind": kind, "name": item.name, "from": _origin(pm, impl.plugin)})
    rows.sort(key=lambda r: (r["kind"], r["name"]))
    for row in rows:
        print(json.dumps(row) if args.json else f"{row['kind']:<12} {row['name']:<18} {row['from']}")
    return 0


def _new(args: argparse.Namespace, settings: Settings) -> int:
    try:
        names = plugin_names(args.kind, args.name)
        builtin = load_registry(get_plugin_manager(load_entrypoints=False), env={})
        taken = {"source": builtin.sources, "destination": builtin.destinations,
                 "ai-provider": builtin.ai_providers}[args.kind]
        if names.name in taken:
            # Two plugins registering one name stop every service at start-up.
            raise ScaffoldError(f"a built-in {names.kind_text} is already named {names.name!r}")
        directory = Path(args.directory) if args.directory else Path.cwd() / names.distribution
        written = scaffold(names, directory)
    except ScaffoldError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"created {path}")
    print(f"\nNext: cd {directory} && pip install -e . && pytest  (the contract tests, docs/plugins.md)")
    return 0


def _send_sample(args: argparse.Namespace, settings: Settings) -> int:
    source_type = load_registry().source(args.type)
    if not hasattr(source_type, "sign"):
        print(f"switchboard: the {args.type} source cannot sign samples", file=sys.stderr)
        return 1
    sample = next(iter(sorted(SAMPLES.glob(f"{args.type}.*"))), None)
    if sample is None:
        print(f"switchboard: no sample for {args.type} in {SAMPLES}", file=sys.stderr)
        return 1
    config = source_type.validate_config(json.loads(args.config))
    url = f"{(args.edge or edge_url(settings)).rstrip('/')}/in/{args.source}"
    body = sample.read_bytes()
    headers = source_type.sign(body, args.secret, config, url)
    reply = httpx.post(url, content=body, headers=headers, timeout=30)
    print(f"{reply.status_code} {reply.text}")
    return 0 if reply.status_code < 300 else 1


def add_commands(commands: argparse._SubParsersAction) -> None:
    plugins = commands.add_parser("plugins", help="the plugins of every kind and where they come from")
    actions = plugins.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=_list)
    new = actions.add_parser("new", help="an installable plugin package to start from, with its contract tests")
    new.add_argument("kind", choices=list(KINDS))
    new.add_argument("name", help="what the plugin registers, e.g. acme (lower-case letters, digits, hyphens)")
    new.add_argument("--directory", help="where to write it (default: ./switchboard-<name>); must be empty")
    new.set_defaults(func=_new)

    sample = commands.add_parser("send-sample", help="sign and send a provider's sample webhook to a source")
    sample.add_argument("type", help="the source type: stripe, github, slack, intercom, twilio, ...")
    sample.add_argument("--source", required=True, help="the source id")
    sample.add_argument("--secret", required=True,
                        help="the source's secret (shown when it was created); may start with -")
    sample.add_argument("--config", default="{}", help="the source's config, if it has one (JSON)")
    sample.add_argument("--edge", help="the edge URL (default: the running `switchboard up`)")
    sample.set_defaults(func=_send_sample)
