import sys

from llm_annotator.cli import main

sys.exit(main())
