"""``flatkd`` command line (SPEC §5): train, eval, report, demo.

Every user error is one line on stderr naming the valid choices, exit code 2; nothing is left
half-written (checkpoints and results are written atomically).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from . import config as cfgmod
from .errors import FlatkdError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):               # one line instead of usage + message
        raise FlatkdError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    from . import datasets, models
    from .evaluator import SUITE_CHOICES
    from .training import METHODS

    p = _Parser(prog="flatkd", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train one run (SPEC §3)")
    t.add_argument("--method", required=True, choices=METHODS.names())
    t.add_argument("--arch", required=True, choices=models.names())
    t.add_argument("--dataset", required=True, choices=datasets.names())
    t.add_argument("--out", required=True, help="run directory (checkpoint.pt, metrics.csv, config.yaml)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--interval", type=float, help="space interval in epochs (spaced methods)")
    t.add_argument("--seed", type=int)
    t.add_argument("--device", choices=["auto", "cpu", "cuda"])
    t.add_argument("--data-root", dest="data_root")
    t.add_argument("--config", help="YAML file of config keys")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--quiet", action="store_true", help="no progress bars")

    e = sub.add_parser("eval", help="evaluate a checkpoint (SPEC §6)")
    e.add_argument("--ckpt", required=True)
    e.add_argument("--suite", required=True, choices=list(SUITE_CHOICES))
    e.add_argument("--model", default="student", help="network in the checkpoint (student|teacher)")
    e.add_argument("--out", help="result JSON path (default: print to stdout)")
    e.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    e.add_argument("--config", help="YAML file of evaluation keys")
    e.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    e.add_argument("--quiet", action="store_true")

    r = sub.add_parser("report", help="tables and figures from result JSON files")
    r.add_argument("results", nargs="+")
    r.add_argument("--out", required=True)

    d = sub.add_parser("demo", help="the main job end to end on the embedded digits set")
    d.add_argument("--out", default="demo")
    d.add_argument("--quiet", action="store_true")
    return p


def _train(a) -> None:
    from .training import run
    overrides = cfgmod.parse_overrides(a.set)
    if a.data_root:
        overrides["data_root"] = a.data_root
    path = run(a.method, a.arch, a.dataset, a.out, epochs=a.epochs, interval=a.interval, seed=a.seed,
               device=a.device, config_file=a.config, overrides=overrides, resume=a.resume,
               progress=not a.quiet)
    from .checkpoint import load_checkpoint
    last = load_checkpoint(path).metrics[-1]
    print(f"checkpoint: {path}  student test acc {last['student_test_acc']:.4f}")


def _eval(a) -> None:
    from .evaluator import evaluate
    result = evaluate(a.ckpt, a.suite, model=a.model, overrides=cfgmod.parse_overrides(a.set),
                      config_file=a.config, out=a.out, device=a.device, progress=not a.quiet)
    if a.out:
        print(f"result: {a.out}")
    else:
        print(json.dumps(result, indent=2, sort_keys=True))


def _report(a) -> None:
    from .report import build_report
    written = build_report(a.results, a.out)
    print(f"report: {a.out} ({len(written.get('files', written))} files)")


def _demo(a) -> None:
    from .demo import run_demo
    print(f"report: {run_demo(a.out, progress=not a.quiet)}")


COMMANDS = {"train": _train, "eval": _eval, "report": _report, "demo": _demo}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        COMMANDS[args.command](args)
    except FlatkdError as e:
        print(f"flatkd: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("flatkd: interrupted; the last checkpoint is kept (continue with --resume)",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
