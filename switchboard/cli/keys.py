"""``switchboard tenants ...`` and ``switchboard keys ...``: AuthService over gRPC."""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import timedelta

from google.protobuf.json_format import MessageToDict

from switchboard.client import Client
from switchboard.errors import SwitchboardError
from switchboard.masterkey import rotate_master_key, service_token
from switchboard.settings import Settings, SettingsError
from switchboard.cli.supervisor import running_port
from switchboard.v1 import auth_pb2 as pb

__all__ = ["add_commands"]

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``24h``, ``30d``."""
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 15m, 24h or 30d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _auth_target(settings: Settings) -> str:
    # A running `switchboard up` may have chosen its ports: it records them.
    port = running_port(settings.state_dir, "auth")
    if "auth" not in settings.grpc_targets and port is not None:
        return f"{settings.grpc_host}:{port}"
    return settings.grpc_target("auth")


def _show(message, as_json: bool, fields: tuple[str, ...]) -> None:
    data = MessageToDict(message, preserving_proto_field_name=True)
    if as_json:
        print(json.dumps(data))
    else:
        print("  ".join(f"{f}={','.join(data[f]) if isinstance(data.get(f), list) else data.get(f, '-')}"
                        for f in fields))


_KEY_FIELDS = ("id", "prefix", "name", "scopes", "created_at", "last_used_at", "expires_at", "revoked_at")


def _run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        # The operator's own calls: the services' token, from the master key (or SWITCHBOARD_SERVICE_TOKEN).
        client = Client(service_token(settings), targets={"auth": _auth_target(settings)},
                        timeout_s=settings.rpc_timeout_s)
    except SettingsError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return 2
    with client:
        try:
            if args.command == "tenants" and args.action == "create":
                _show(client.create_tenant(name=args.name, actor="cli"), args.json, ("id", "name"))
            elif args.command == "tenants":
                for tenant in client.list_tenants().tenants:
                    _show(tenant, args.json, ("id", "name", "created_at"))
            elif args.action == "create":
                expires = int(args.expires_in.total_seconds()) if args.expires_in else 0
                _print_issued(client.create_api_key(tenant_id=args.tenant, name=args.name, scopes=args.scope,
                                                    expires_in_seconds=expires, actor="cli"), args.json)
            elif args.action == "list":
                for key in client.list_api_keys(tenant_id=args.tenant).keys:
                    _show(key, args.json, _KEY_FIELDS)
            elif args.action == "revoke":
                _show(client.revoke_api_key(tenant_id=args.tenant, key_id=args.key_id, actor="cli"), args.json,
                      _KEY_FIELDS)
            else:
                grace = int(args.grace.total_seconds()) if args.grace else 0
                _print_issued(client.rotate_api_key(tenant_id=args.tenant, key_id=args.key_id, grace_seconds=grace,
                                                    actor="cli"), args.json)
        except SwitchboardError as exc:
            print(f"switchboard: {exc.code}: {exc.message}", file=sys.stderr)
            return 1
    return 0


def _print_issued(issued: pb.CreateApiKeyResponse, as_json: bool) -> None:
    if as_json:
        print(json.dumps({**MessageToDict(issued.key, preserving_proto_field_name=True), "secret": issued.secret}))
        return
    _show(issued.key, False, _KEY_FIELDS)
    print(f"key: {issued.secret}")
    print("(shown once: store it now)", file=sys.stderr)


def add_commands(commands: argparse._SubParsersAction) -> None:
    tenants = commands.add_parser("tenants", help="create and list tenants")
    tenant_actions = tenants.add_subparsers(dest="action", required=True)
    create = tenant_actions.add_parser("create")
    create.add_argument("name")
    tenant_actions.add_parser("list")

    keys = commands.add_parser("keys", help="create, list, revoke and rotate API keys")
    key_actions = keys.add_subparsers(dest="action", required=True)
    create = key_actions.add_parser("create")
    create.add_argument("--name", default="key")
    create.add_argument("--scope", action="append", required=True, help="admin, events:publish or read; repeatable")
    create.add_argument("--expires-in", type=duration, help="e.g. 90d; default: never")
    key_actions.add_parser("list")
    revoke = key_actions.add_parser("revoke")
    revoke.add_argument("key_id")
    rotate = key_actions.add_parser("rotate")
    rotate.add_argument("key_id")
    rotate.add_argument("--grace", type=duration, help="how long the old key keeps working (default 24h)")
    for parser in (*tenant_actions.choices.values(), *key_actions.choices.values()):
        parser.add_argument("--json", action="store_true", help="one JSON object per line")
    for parser in key_actions.choices.values():
        parser.add_argument("--tenant", required=True)
    tenants.set_defaults(func=_run)
    keys.set_defaults(func=_run)
    master = key_actions.add_parser(
        "rotate-master", help="replace master.key in the state folder (switchboard up); the old one is kept "
                              "in master.key.previous until every secret is sealed and API key hashed anew")
    master.set_defaults(func=_rotate_master)
    token = key_actions.add_parser(
        "service-token", help="print the services' gRPC credential (derived from the master key), for "
                              "SWITCHBOARD_SERVICE_TOKEN of a process that should not hold the master key")
    token.set_defaults(func=_print_service_token)


def _print_service_token(args: argparse.Namespace, settings: Settings) -> int:
    try:
        print(service_token(settings))
    except SettingsError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return 2
    return 0


def _rotate_master(args: argparse.Namespace, settings: Settings) -> int:
    if settings.master_key:
        print("switchboard: SWITCHBOARD_MASTER_KEY is set, so the master key is yours to change: set it to a new "
              "key and SWITCHBOARD_PREVIOUS_MASTER_KEYS to the old one, then restart every service",
              file=sys.stderr)
        return 2
    try:
        rotate_master_key(settings.state_dir)
    except SettingsError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return 2
    print(f"New master key in {settings.state_dir / 'master.key'}; the old one is in master.key.previous.\n"
          "Restart `switchboard up`: every source and endpoint secret is sealed again with the new key as the\n"
          "services start, and each API key is hashed again the next time it is used. Keep master.key.previous\n"
          "until every API key has been used once since (an unused key needs it to verify).")
    return 0
