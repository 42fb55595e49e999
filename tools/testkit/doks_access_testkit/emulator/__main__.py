"""``python -m doks_access_testkit.emulator``: the same as ``doks-access-emulator``."""

import sys

from doks_access_testkit.emulator.cli import main

sys.exit(main())
