"""`python -m pipeline.bench SPEC.json RESULT.json`: one training recipe in a child process.

The benchmark's parent process starts this command once per (model, recipe); see
`training_benchmark`.
"""

import sys

from pipeline.bench import _worker_main

sys.exit(_worker_main(sys.argv[1:]))
