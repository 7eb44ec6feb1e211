import sys

from .cli import main  # importing edge_sdk armed the start-up Ctrl-C handler (edge_sdk/__init__.py)

sys.exit(main())
