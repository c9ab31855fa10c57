"""``python -m myservice.cli.importer``: the same as the console script ``myservice-import``."""

import sys

from myservice.cli.importer import main

sys.exit(main())
