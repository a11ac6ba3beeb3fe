from __future__ import annotations

import sys

from rollwise.cli import main

sys.exit(main())
