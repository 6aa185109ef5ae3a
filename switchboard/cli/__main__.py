"""``python -m switchboard.cli``: the ``switchboard`` command."""

import sys

from switchboard.cli.main import main

sys.exit(main())
