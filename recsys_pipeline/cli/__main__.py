"""``python -m recsys_pipeline.cli``: the same as the ``recsys`` console script."""

import sys

from recsys_pipeline.cli import main

sys.exit(main())
