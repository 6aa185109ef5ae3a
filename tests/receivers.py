"""A real HTTP receiver on loopback; it lives in :mod:`switchboard.testing.receivers`, shared with plugin authors."""

from switchboard.testing.receivers import Received, Receiver

__all__ = ["Received", "Receiver"]
