import sys

from bnexp.cli import main

sys.exit(main())
