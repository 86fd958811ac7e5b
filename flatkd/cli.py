"""``flatkd`` command line: train, eval, report, demo, config, sweep.

Every user error is one line on stderr naming the valid choices, exit code 2; nothing is left
half-written (checkpoints and results are written atomically).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import textwrap
from typing import Sequence

from . import config as cfgmod
from .errors import (EXIT_INTERRUPTED, EXIT_USAGE, INTERRUPTED, FlatkdError, did_you_mean,
                     report_error)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):               # one line instead of usage + message
        command = self.prog.partition(" ")[2]          # "flatkd train" → "train"
        bad = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if bad:
            choices = [c.strip().strip("'\"") for c in bad.group(2).split(",")]
            message += did_you_mean(bad.group(1), choices)
        raise FlatkdError(f"{command}: {message}" if command else message)


TRAIN_EPILOG = """examples:
  flatkd train --method spaced-online --arch resnet8 --dataset digits --epochs 3 --interval 0.5 --out runs/demo
  flatkd train --method online --arch resnet18 --dataset cifar100 --data-root ~/data --out runs/online --device cuda
  flatkd train --method spaced-self --arch resnet18 --dataset cifar100 --set kd.teacher_init=same --out runs/ss
  flatkd train ... --out runs/online --resume        # continue an interrupted run

every setting is a config key: list them with `flatkd config train`"""

EVAL_EPILOG = """examples:
  flatkd eval --ckpt runs/demo/checkpoint.pt --suite flatness --set hessian.samples=256 --out r.json
  flatkd eval --ckpt runs/demo/checkpoint.pt --suite robustness --model teacher --out r-teacher.json
  flatkd eval --ckpt runs/demo/checkpoint.pt --suite all --config flatkd/presets/eval-quick.yaml

every setting is a config key: list them with `flatkd config eval`"""

REPORT_EPILOG = """examples:
  flatkd report results/*.json --out report/
  flatkd report checkpoints/reference/results --out reference-report/"""

SWEEP_EPILOG = """examples:
  flatkd sweep plan digits-intervals                       # a shipped sweep, by name
  flatkd sweep run digits-intervals --launcher local --jobs 2
  flatkd report sweeps/digits-intervals/results --out sweeps/digits-intervals/report
  flatkd sweep run my-sweep.yaml --set seeds=0,1 --set train.epochs=3 --out sweeps/try
  flatkd sweep run paper-intervals-cifar100 --launcher torchrun --nproc-per-node 4 --data-root ~/data
  flatkd sweep plan paper-intervals-cifar100 --launcher slurm   # the sbatch script, no cluster needed
  flatkd sweep run paper-intervals-cifar100 --launcher slurm --data-root /datasets

shipped sweeps: {presets}"""

CONFIG_EPILOG = """examples:
  flatkd config train                    # every training key, the paper's defaults
  flatkd config train --dataset digits   # with the digits preset applied
  flatkd config eval"""


#: sub-command → its one-line help; a sub-command's options are built only when it is the one
#: invoked, so ``flatkd --help`` and ``--version`` import neither PyTorch nor the registries
COMMAND_HELP = {
    "train": "train one run",
    "eval": "evaluate a checkpoint",
    "report": "tables and figures from result files",
    "demo": "the main job end to end on the embedded digits set",
    "config": "list every config key with its default and meaning",
    "sweep": "many runs from one sweep file: plan, run, resume",
}


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``flatkd`` parser; only ``command``'s options are built (see :data:`COMMAND_HELP`)."""
    from . import __version__

    p = _Parser(prog="flatkd", description="Train knowledge-distillation models (online, self, "
                "spaced) and measure the flatness and robustness they converge to.")
    p.add_argument("--version", action="version", version=f"flatkd {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    for name, text in COMMAND_HELP.items():
        a = sub.add_parser(name, help=text, formatter_class=_Help)
        if name == command:
            _OPTIONS[name](a)
    return p


def _train_options(t: argparse.ArgumentParser) -> None:
    from . import datasets, models
    from .training import METHODS

    t.description = "Train one run into --out (checkpoint.pt, metrics.csv, config.yaml)."
    t.epilog = TRAIN_EPILOG + "\n\n" + _method_list(METHODS)
    t.add_argument("--method", required=True, choices=METHODS.names(), metavar="METHOD",
                   help="training method (listed below)")
    t.add_argument("--arch", choices=models.names(),
                   help="student architecture (default: the --config file's arch)")
    t.add_argument("--dataset", choices=datasets.names(),
                   help="dataset (default: the --config file's dataset)")
    t.add_argument("--out", required=True, help="run directory (checkpoint.pt, metrics.csv, config.yaml)")
    t.add_argument("--epochs", type=int, help="training epochs (default: 80, or the dataset preset's)")
    t.add_argument("--interval", type=float,
                   help="space interval in epochs, spaced methods only (default: 1.5 spaced-online, "
                   "4.0 spaced-self)")
    t.add_argument("--seed", type=int, help="seed of initialisation, data order and augmentation "
                   "(default: 0)")
    t.add_argument("--device", choices=["auto", "cpu", "cuda"], help="device (default: auto)")
    t.add_argument("--data-root", dest="data_root", help="folder holding the dataset files")
    t.add_argument("--config", help="YAML file of config keys (applied after the dataset preset)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. kd.teacher_init=same (repeatable)")
    t.add_argument("--teacher-ckpt", dest="teacher_ckpt", metavar="PATH",
                   help="frozen pretrained teacher: any flatkd checkpoint of the same dataset "
                        "(offline KD and the methods with a frozen teacher; same as --set "
                        "teacher_ckpt=PATH)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    _nproc_option(t)


_ABBREVIATIONS = {"al", "App", "Alg", "Eq", "Fig", "Sec", "e.g", "i.e", "vs", "cf"}


def _method_list(methods) -> str:
    """``flatkd train --help``'s table of methods: each name with its docstring's first sentence."""
    rows = []
    for name in methods.names():
        doc = methods.get(name).__doc__ or ""
        words = []
        for word in doc.split():
            words.append(word)
            if word[-1] in ".:;" and word[:-1].lstrip("(") not in _ABBREVIATIONS:
                break
        first = " ".join(words).rstrip(".:;")
        rows.append(f"  {name:<21}{textwrap.shorten(first, 76, placeholder=' …')}")
    return "methods (--method):\n" + "\n".join(rows)


def _eval_options(e: argparse.ArgumentParser) -> None:
    from .evaluator import SUITE_CHOICES

    e.description = "Evaluate one network of a checkpoint and write one JSON result."
    e.epilog = EVAL_EPILOG
    e.add_argument("--ckpt", required=True, help="checkpoint file written by flatkd train")
    e.add_argument("--suite", required=True, type=_suite_arg, metavar="SUITE",
                   help="what to measure: " + ", ".join(SUITE_CHOICES)
                        + ", or a comma-separated list (flatness,robustness)")
    e.add_argument("--model", default="student",
                   help="network of the checkpoint to evaluate: student, teacher, or "
                        "any other it holds (assistant, gen1, peer0, …; an unknown name is "
                        "refused with the checkpoint's networks listed)")
    e.add_argument("--out", help="result JSON path (default: print to stdout)")
    e.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="device")
    e.add_argument("--config", help="YAML file of evaluation keys")
    e.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one evaluation key, e.g. hessian.samples=256 (repeatable)")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    _nproc_option(e)


def _nproc_option(a: argparse.ArgumentParser) -> None:
    a.add_argument("--nproc-per-node", dest="launch_nproc", type=int, metavar="N",
                   help="run in N processes on this machine under torchrun (one per GPU with "
                        "--device cuda; gloo on CPU) and report like one process: a refused "
                        "input is one line, exit 2 (default: one process)")


def _report_options(r: argparse.ArgumentParser) -> None:
    r.description = "Group results across seeds and write report.md, tables and figures."
    r.epilog = REPORT_EPILOG
    r.add_argument("results", nargs="+", help="result JSON files or folders holding them")
    r.add_argument("--out", required=True, help="report directory")
    r.add_argument("--controls", nargs="+", default=[], metavar="RESULTS",
                   help="result files or folders of step-matched control runs (e.g. self KD "
                        "trained for spaced self-KD's number of optimizer steps), compared "
                        "with the spaced runs in a section of their own")


def _demo_options(d: argparse.ArgumentParser) -> None:
    d.description = ("Train baseline, online, spaced-online, self and spaced-self ResNet-8s on "
                     "digits, evaluate every student and build the report; re-running reuses "
                     "finished steps.")
    d.add_argument("--out", default="demo", help="demo directory")
    d.add_argument("--quiet", action="store_true", help="no progress output")


def _config_options(c: argparse.ArgumentParser) -> None:
    from . import datasets

    c.description = ("List the config keys of flatkd train or flatkd eval with their default "
                     "values and meaning.")
    c.epilog = CONFIG_EPILOG
    c.add_argument("which", choices=["train", "eval"], help="whose keys")
    c.add_argument("--dataset", choices=datasets.names(),
                   help="show the values with this dataset's preset applied (train only)")


def _sweep_options(sw: argparse.ArgumentParser) -> None:
    from .sweep import CLUSTERS, LAUNCHERS, preset_names
    from .sweep.parse import MAX_RUNS

    epilog = SWEEP_EPILOG.format(presets=", ".join(preset_names()))
    sw.description = ("A sweep file (methods × archs × datasets × intervals × seeds × any "
                      "training key, plus the evaluation) expands to runs with stable names. "
                      "'plan' lists them with their state; 'run' trains what is not finished, "
                      "resumes interrupted runs, evaluates every finished checkpoint and leaves "
                      "the results in OUT/results for flatkd report.")
    sw.epilog = epilog
    sweep_sub = sw.add_subparsers(dest="sweep_command", required=True, parser_class=_Parser,
                                  metavar="ACTION")
    for action, text in (("plan", "list the runs, their state and (--commands) their commands"),
                         ("run", "run what is not finished, then evaluate")):
        a = sweep_sub.add_parser(action, help=text, description=text[0].upper() + text[1:] + ".",
                                 epilog=epilog, formatter_class=_Help)
        a.add_argument("file", metavar="FILE",
                       help="sweep file (YAML), or the name of a shipped sweep")
        a.add_argument("--out", help="sweep folder (default: the file's out, else sweeps/NAME)")
        a.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a key of the sweep file, e.g. seeds=0,1, train.epochs=3, "
                       "eval.suite=all, eval.set.hessian.samples=64 (repeatable)")
        a.add_argument("--data-root", dest="data_root",
                       help="folder holding the dataset files (sets train.data_root)")
        a.add_argument("--launcher", default="local", choices=list(LAUNCHERS),
                       help="local: flatkd train/eval processes; torchrun: each run under "
                       "torchrun --nproc_per_node N; slurm: a job array through submitit")
        a.add_argument("--nproc-per-node", dest="nproc", type=int,
                       help="processes per run under torchrun (default: the file's "
                       "torchrun.nproc_per_node, else the number of GPUs, else 1)")
        a.add_argument("--max-runs", dest="max_runs", type=int, default=MAX_RUNS,
                       help="refuse a sweep that expands to more runs (counted before it is "
                            f"expanded; default: {MAX_RUNS})")
        if action == "plan":
            a.add_argument("--commands", action="store_true",
                           help="also print the commands each unfinished run would start")
        else:
            a.add_argument("--jobs", type=int, default=1,
                           help="runs at once (local and torchrun launchers)")
            a.add_argument("--cluster", default="slurm", choices=list(CLUSTERS),
                           help="submitit executor of --launcher slurm: slurm, or local/debug to "
                           "run the job array on this machine")
            a.add_argument("--wait", action="store_true",
                           help="with --launcher slurm: wait for the jobs and check their runs")
            a.add_argument("--report", action="store_true",
                           help="build OUT/report when every run is done")


_OPTIONS = {"train": _train_options, "eval": _eval_options, "report": _report_options,
            "demo": _demo_options, "config": _config_options, "sweep": _sweep_options}


class _Help(argparse.RawDescriptionHelpFormatter):
    """Examples kept as written; an option's default is appended to its help unless the help
    already states it or there is none (flags, required options)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, [], argparse.SUPPRESS) \
                or action.required:
            return text
        return f"{text} (default: %(default)s)"


def _suite_arg(text: str) -> str:
    """``--suite`` value: a suite, a comma-separated list of suites, or ``all``."""
    from .evaluator import SUITE_CHOICES
    for name in text.split(","):
        if name.strip() not in SUITE_CHOICES or (name.strip() == "all" and text != "all"):
            raise argparse.ArgumentTypeError(
                f"invalid choice: {name.strip()!r} (choose from "
                + ", ".join(repr(c) for c in SUITE_CHOICES) + ", or a comma-separated list)")
    return text


def _train(a) -> None:
    from .training import run
    overrides = cfgmod.parse_overrides(a.set)
    if a.data_root:
        overrides["data_root"] = a.data_root
    if a.teacher_ckpt:
        overrides["teacher_ckpt"] = a.teacher_ckpt
    path = run(a.method, a.arch, a.dataset, a.out, epochs=a.epochs, interval=a.interval, seed=a.seed,
               device=a.device, config_file=a.config, overrides=overrides, resume=a.resume,
               progress=not a.quiet)
    from .errors import main_process
    if not main_process():              # under torchrun only rank 0 reports
        return
    from .checkpoint import load_checkpoint
    last = load_checkpoint(path).metrics[-1]
    print(f"checkpoint: {path}  student test acc {last['student_test_acc']:.4f}")


def _eval(a) -> None:
    from .evaluator import evaluate
    result = evaluate(a.ckpt, a.suite, model=a.model, overrides=cfgmod.parse_overrides(a.set),
                      config_file=a.config, out=a.out, device=a.device, progress=not a.quiet)
    from .errors import main_process
    if not main_process():              # under torchrun only rank 0 reports
        return
    if a.out:
        print(f"result: {a.out}")
    else:
        print(json.dumps(result, indent=2, sort_keys=True))


def _report(a) -> None:
    from .io import writable_target
    from .report import build_report
    writable_target(a.out, "report directory")
    written = build_report(a.results, a.out, controls=a.controls)
    print(f"report: {a.out} ({len(written.get('files', written))} files)")


def _config(a) -> None:
    if a.which == "train":
        from .training import resolve
        if a.dataset is not None:
            cfg = resolve("baseline", "resnet18", a.dataset)
        else:
            from .training.config import TrainConfig
            cfg = TrainConfig()
    else:
        from .evaluator import EvalConfig
        cfg = EvalConfig()
    if a.which == "eval" and a.dataset is not None:
        raise FlatkdError("--dataset applies to flatkd config train only")
    for key, value, meaning in cfgmod.describe(cfg):
        shown = "unset" if value is None else (",".join(map(str, value)) if isinstance(value, list)
                                               else str(value).lower() if isinstance(value, bool) else value)
        print(f"{key} = {shown}\n    {meaning}")


def _demo(a) -> None:
    from .demo import run_demo
    from .io import writable_target
    writable_target(a.out, "demo directory")
    print(f"report: {run_demo(a.out, progress=not a.quiet)}")


def _sweep(a) -> None:
    from . import sweep
    overrides = cfgmod.parse_overrides(a.set)
    if a.data_root:
        overrides["train.data_root"] = a.data_root
    if a.nproc is not None and a.nproc < 1:
        raise FlatkdError(f"--nproc-per-node must be ≥ 1, got {a.nproc}")
    if a.max_runs < 1:
        raise FlatkdError(f"--max-runs must be ≥ 1, got {a.max_runs}")
    s = sweep.load(a.file, overrides, out=a.out, max_runs=a.max_runs)
    if a.sweep_command == "plan":
        print(sweep.plan_text(s, a.launcher, a.nproc, commands=a.commands))
        return
    sweep.run_sweep(s, a.launcher, jobs=a.jobs, nproc=a.nproc, cluster=a.cluster, wait=a.wait,
                    report=a.report, say=lambda line: print(line, flush=True))


COMMANDS = {"train": _train, "eval": _eval, "report": _report, "demo": _demo, "config": _config,
            "sweep": _sweep}


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    try:
        args = _parser(command if command in COMMAND_HELP else None).parse_args(argv)
        nproc = getattr(args, "launch_nproc", None)
        if nproc is not None:
            if nproc < 1:
                raise FlatkdError(f"{args.command}: --nproc-per-node must be ≥ 1, got {nproc}")
            if nproc > 1:
                from .torchrun import launch, strip_option
                return launch(strip_option(argv, "--nproc-per-node"), nproc)
        COMMANDS[args.command](args)
    except FlatkdError as e:
        report_error(str(e))
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"flatkd: {INTERRUPTED}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader of stdout went away (``flatkd sweep plan ... | head``): stop quietly, and
        # point stdout at devnull so the interpreter's final flush cannot raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
