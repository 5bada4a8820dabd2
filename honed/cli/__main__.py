"""`python -m honed.cli ...` (as `accelerate launch -m honed.cli` and `torchrun -m honed.cli` call it)."""

import sys

from honed.cli import main

sys.exit(main())
