"""``python -m wallaroo`` is the ``wallaroo`` command."""

import sys

from wallaroo.cli.main import main

sys.exit(main())
