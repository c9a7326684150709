"""`python -m pipeline.bench SPEC.json RESULT.json`: one training recipe in a child process.

The benchmark's parent process starts this command once per (model, recipe); see
`training.run_recipe`.
"""

import sys

from pipeline.bench.recipes import worker_main

sys.exit(worker_main(sys.argv[1:]))
