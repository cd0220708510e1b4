import sys

from bbb_tui.cli import main

sys.exit(main())
