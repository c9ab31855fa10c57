"""``python -m bench`` (``make bench``)."""

import sys

from bench.http_bench import main

sys.exit(main())
