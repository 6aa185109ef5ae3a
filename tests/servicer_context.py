"""Enough of a gRPC servicer context to call a servicer's methods directly: an abort raises, with its status."""

from __future__ import annotations

import grpc


class Aborted(Exception):
    pass


class Context:
    async def abort(self, code: grpc.StatusCode, details: str, trailing_metadata: object = None) -> None:
        raise Aborted(code, details)
