"""``python -m flatkd.study RESULTS... --out study.json``: the measure-vs-generalization study."""
from __future__ import annotations

import argparse
import sys

from ..errors import FlatkdError, one_line
from .study import StudySettings, run_study


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):               # one line instead of a usage block
        raise FlatkdError(message)


def main(argv: list[str] | None = None) -> int:
    p = _Parser(
        prog="python -m flatkd.study",
        description="Kendall's tau of every measure with the generalization gap and with test "
                    "accuracy (bootstrap interval), granulated tau per varied hyper-parameter.")
    p.add_argument("results", nargs="+", help="result files or folders of them")
    p.add_argument("--out", required=True, help="study JSON file to write")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default: 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    try:
        a = p.parse_args(argv)
        study = run_study(a.results, StudySettings(n_resamples=a.resamples, seed=a.seed), a.out)
    except FlatkdError as e:
        print(f"flatkd.study: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    print("\n".join(study["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
