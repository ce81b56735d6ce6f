"""`python3 -m kube_standin` and the zip application's entry point."""

import sys

from kube_standin.main import main

sys.exit(main())
