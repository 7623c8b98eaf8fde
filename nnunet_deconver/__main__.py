"""``python -m nnunet_deconver``: the ``nnunet-deconver`` command."""

import sys

from nnunet_deconver.cli import main

if __name__ == "__main__":
    sys.exit(main())
