import sys

from looplm.cli.main import main

sys.exit(main())
