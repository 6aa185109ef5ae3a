#!/usr/bin/env python
"""Container health check, installed in the image as ``switchboard-healthcheck``.

    switchboard-healthcheck grpc PORT         # grpc.health.v1 Check("") is SERVING
    switchboard-healthcheck http PORT PATH    # GET http://127.0.0.1:PORT/PATH is 200

Exits 0 when healthy, 1 otherwise. Used by deploy/compose.yaml; Kubernetes
uses its native grpc/httpGet probes instead.
"""

from __future__ import annotations

import sys


def grpc_serving(port: int) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=3)
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def http_ok(port: int, path: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as response:
        return response.status == 200


def main(argv: list[str]) -> int:
    try:
        if len(argv) == 2 and argv[0] == "grpc":
            healthy = grpc_serving(int(argv[1]))
        elif len(argv) == 3 and argv[0] == "http":
            healthy = http_ok(int(argv[1]), argv[2])
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except Exception as exc:  # connection refused, deadline, HTTP 503, ...
        print(f"unhealthy: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
