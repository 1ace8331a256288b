"""``python -m datasets.prepare_meshes``: the command line of :func:`datasets.prepare_meshes.prepare.main`."""

import sys

from datasets.prepare_meshes.prepare import main

sys.exit(main())
