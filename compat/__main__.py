"""``python -m compat``: see run.py."""

import sys

from compat.run import main

sys.exit(main())
