"""``python -m wandb`` under tracklet's W&B layer (and ``python -m tracklet.compat.wandb``): W&B's sweep
command line, ``wandb sweep`` / ``wandb agent`` (``cli.py``)."""

import sys

from tracklet.compat.wandb.cli import main

sys.exit(main())
