"""The kit for plugin authors: the contract tests every plugin must pass, and what they run against.

- :class:`SourceContract`, :class:`DestinationContract`,
  :class:`AIProviderContract`: base classes of tests; a plugin's test module
  subclasses the one for its kind and pytest runs the whole contract on it.
  The built-in plugins pass the same tests (tests/plugins/test_contracts.py).
- :class:`Receiver`: a real HTTP server on loopback that records requests and
  answers as told (a customer's endpoint, a provider's API).
- :class:`Platform` and :func:`base_env`: `switchboard up` as a process tree
  on embedded NATS JetStream and PostgreSQL.

Installing Switchboard registers :mod:`switchboard.testing.pytest_plugin`
with pytest (a ``pytest11`` entry point): a plugin package's tests get the
``switchboard_platform`` and ``switchboard_receiver`` fixtures without a
conftest. Like ``switchboard.cli``, this package sits on top of the plugins
(it imports their specs); the runtime library never imports it.
"""

import pytest

# Contract failures read like any test's: pytest rewrites the asserts of the modules below.
pytest.register_assert_rewrite("switchboard.testing.sources", "switchboard.testing.destinations",
                               "switchboard.testing.ai")

from switchboard.testing.ai import AIProviderContract  # noqa: E402
from switchboard.testing.destinations import DestinationContract  # noqa: E402
from switchboard.testing.platform import Platform, base_env  # noqa: E402
from switchboard.testing.receivers import Received, Receiver  # noqa: E402
from switchboard.testing.sources import SourceContract  # noqa: E402

__all__ = ["AIProviderContract", "DestinationContract", "Platform", "Received", "Receiver", "SourceContract",
           "base_env"]
