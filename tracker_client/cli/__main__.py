"""``python -m tracker_client.cli``: the ``tracker`` command without its console script."""

import sys

from tracker_client.cli import main

sys.exit(main())
