"""``python -m llm_annotator.cli``: the command (``--markdown`` prints docs/cli.md)."""

import sys

from llm_annotator.cli import main

sys.exit(main())
