"""The ``switchboard`` command line."""

from __future__ import annotations

import argparse
import runpy
import sys

from switchboard.cli.keys import add_commands as add_key_commands
from switchboard.cli.listen import add_commands as add_listen_commands
from switchboard.cli.plugins import add_commands as add_plugin_commands
from switchboard.cli.replay import add_commands as add_replay_commands
from switchboard.logs import configure_logging
from switchboard.settings import SERVICE_NAMES, Settings, SettingsError, cluster_nodes

__all__ = ["main", "parse_args"]

# Options whose values may start with "-": a generated or chosen secret can ("-Kq3v..."), and argparse
# would take "--secret -Kq3v..." for a missing value followed by an unknown option.
_DASHED_VALUE_OPTIONS = frozenset({"--secret"})


def _up(args: argparse.Namespace, settings: Settings) -> int:
    from switchboard.cli.supervisor import Supervisor

    configure_logging("supervisor", settings.telemetry.log_level, settings.telemetry.log_format)
    if args.cluster is not None:
        if settings.nats_url:
            print("switchboard: --cluster starts an embedded NATS cluster: unset SWITCHBOARD_NATS_URL "
                  "(against a cluster of your own, set SWITCHBOARD_STREAM_REPLICAS=3 and list its servers "
                  "in SWITCHBOARD_NATS_URL)", file=sys.stderr)
            return 2
        settings = settings.with_group("bus", nats_cluster=args.cluster)
    return Supervisor(settings).run()


def _service(args: argparse.Namespace, settings: Settings) -> int:
    # The same as `python -m services.<name>`: one service, configured URLs.
    sys.argv = [f"services.{args.name}"]
    runpy.run_module(f"services.{args.name}", run_name="__main__", alter_sys=True)
    return 0


def _receive(args: argparse.Namespace, settings: Settings) -> int:
    from switchboard.cli.receiver import serve_receiver

    serve_receiver(args.host, args.port, args.secret, args.status)
    return 0


def _cluster_nodes(raw: str) -> int:
    try:
        return cluster_nodes("--cluster", raw)
    except SettingsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchboard", description="Switchboard, the AI webhook gateway.")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the infrastructure (embedded when no URLs are set) and every service")
    up.add_argument("--cluster", type=_cluster_nodes, metavar="N",
                    help="an embedded JetStream cluster of N nodes (3) on loopback, streams with 3 replicas and "
                         "2 processes of every service (SWITCHBOARD_NATS_CLUSTER)")
    up.set_defaults(func=_up)
    service = commands.add_parser("service", help="run one service against SWITCHBOARD_NATS_URL/DATABASE_URL")
    service.add_argument("name", choices=SERVICE_NAMES)
    service.set_defaults(func=_service)
    receive = commands.add_parser("receive", help="a loopback endpoint that prints deliveries and checks signatures")
    receive.add_argument("--host", default="127.0.0.1")
    receive.add_argument("--port", type=int, default=9000)
    receive.add_argument("--secret", help="the endpoint's whsec_ secret, to verify signatures")
    receive.add_argument("--status", type=int, default=200, help="the status to answer with (try 503)")
    receive.set_defaults(func=_receive)
    add_key_commands(commands)
    add_plugin_commands(commands)
    add_replay_commands(commands)
    add_listen_commands(commands)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line parsed; ``--secret <value>`` is read as ``--secret=<value>`` whatever the value starts with."""
    argv = list(sys.argv[1:] if argv is None else argv)
    joined: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in _DASHED_VALUE_OPTIONS and i + 1 < len(argv):
            joined.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            joined.append(argv[i])
            i += 1
    return build_parser().parse_args(joined)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return 2
    return args.func(args, settings)
