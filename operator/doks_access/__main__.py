"""``python -m doks_access`` is the ``doks-access`` command."""

import sys

from doks_access.cli import main

sys.exit(main())
