"""``python -m coderunner``: the same as the ``coderunner`` command."""

import sys

from coderunner.cli import main

sys.exit(main())
