"""`python -m libs.datasets.prepare`: see `libs.datasets.prepare.command`."""
import sys

from .command import main

sys.exit(main())
