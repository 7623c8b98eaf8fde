import sys

from nnunet_deconver.cli import main

sys.exit(main())
