import sys

from numpretrain.app.cli import main

sys.exit(main())
