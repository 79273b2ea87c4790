"""Run embtable's benchmark against PyTorch (the same as `embtable bench`)."""

import sys

from embtable.apps.bench import main

sys.exit(main(sys.argv[1:]))
