"""Operator tooling: the ``switchboard`` command (main.py) and what it runs.

``switchboard up`` supervises the platform (supervisor.py), starting NATS and
PostgreSQL itself when no URL is configured (embedded.py); the other commands
manage keys (keys.py), plugins (plugins.py) and replays (replay.py), and
``receiver`` is a local webhook receiver that verifies signatures
(receiver.py). The platform's processes never import this package: it sits on
top of the runtime library (``switchboard``), the services and the plugins.
"""
