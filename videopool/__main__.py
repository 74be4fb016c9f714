import sys

from videopool.cli.main import main

sys.exit(main())
