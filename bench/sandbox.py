"""The code sandbox's cost per run: lancy.sandbox.run_tests on a trivial and a numpy + pandas solution.

    python -m bench.sandbox [--runs 15] [--module path/to/other/sandbox.py]

--module times another implementation of run_tests side by side (e.g. an older lancy/sandbox.py taken with
`git show <commit>:lancy/sandbox.py`), alternating the two so that machine noise hits both alike, and gives
the mean paired difference with its 95% bootstrap interval (lancy.stats.paired, each pair of runs a row).
"""
import argparse
import statistics
import time

import numpy as np

from bench import other_implementation
from lancy import sandbox
from lancy.stats import paired

TESTS = "import unittest\n\nclass TestCases(unittest.TestCase):\n    def test_double(self):\n" \
        "        self.assertEqual(task_func(2), 4)\n"
SOLUTIONS = {"plain": "def task_func(x):\n    return 2 * x\n",
             "numpy+pandas": "import numpy as np, pandas as pd\n\n"
                             "def task_func(x):\n    return int(np.multiply(x, 2))\n"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--module", help="another sandbox.py to time side by side")
    args = parser.parse_args()
    modules = {"lancy": sandbox}
    if args.module:
        modules["other"] = other_implementation(args.module)
    for name, solution in SOLUTIONS.items():
        times = {label: [] for label in modules}
        for _ in range(args.runs):
            for label, module in modules.items():
                start = time.perf_counter()
                assert module.run_tests(solution, TESTS).all_passed
                times[label].append(time.perf_counter() - start)
        for label, values in times.items():
            print(f"{name:13s} {label:6s} median {statistics.median(values) * 1000:6.1f} ms  "
                  f"min {min(values) * 1000:6.1f} ms  ({args.runs} runs)")
        if "other" in times:  # paired over the alternating runs: lancy's run against the other's beside it
            e = paired(np.array(times["lancy"]) * 1000, np.array(times["other"]) * 1000)
            print(f"{name:13s} lancy - other: mean {e.difference:+.1f} ms, 95% interval [{e.low:+.1f}, {e.high:+.1f}]")


if __name__ == "__main__":
    main()
