"""Switchboard's shared core: what every service imports.

Settings, the database pool and migrations, JetStream helpers, gRPC helpers,
logging, telemetry, the embedded infrastructure and the command line live
here. Generated protobuf stubs live in :mod:`switchboard.v1` (made by
``make protos``, never edited).
"""
