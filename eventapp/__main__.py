import sys

from eventapp.cli import main

sys.exit(main())
