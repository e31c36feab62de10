"""`python -m jaxpg.cli ...` is the `jaxpg` command."""

import sys

from jaxpg.cli import main

sys.exit(main())
