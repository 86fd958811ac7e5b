"""CLI contract (SPEC §5): wrong names, ranges or files → one line on stderr, exit 2."""
import pytest

from flatkd.cli import main

BASE = ["train", "--arch", "resnet8", "--dataset", "digits"]


@pytest.mark.parametrize("argv,expect", [
    (["train", "--method", "nope", "--arch", "resnet8", "--dataset", "digits", "--out", "x"],
     "'baseline', 'constant-ahead', "),     # every registered method follows
    (["train", "--method", "online", "--arch", "resnet9", "--dataset", "digits", "--out", "x"],
     "'resnet8'"),
    (["train", "--method", "online", "--arch", "resnet8", "--dataset", "mnist", "--out", "x"],
     "'cifar10', 'cifar100', 'digits', 'imagefolder', 'tinyimagenet'"),
    (BASE + ["--method", "spaced-online", "--interval", "-1", "--out", "x"], "interval must be"),
    (BASE + ["--method", "online", "--interval", "1", "--out", "x"],
     "applies to spaced methods only: "),
    (BASE + ["--method", "online", "--config", "missing.yaml", "--out", "x"], "config file not found"),
    (BASE + ["--method", "online", "--set", "kd.loss=hinge", "--out", "x"],
     "valid choices: kl, ce, l1, smoothl1, mse, mse_sum"),
    (BASE + ["--method", "online", "--set", "nokey=1", "--out", "x"], "valid keys: method"),
    (BASE + ["--method", "online", "--epochs", "0", "--out", "x"], "epochs must be ≥ 1"),
    (["eval", "--ckpt", "missing.pt", "--suite", "flatness"], "checkpoint not found"),
    (["eval", "--ckpt", "missing.pt", "--suite", "speed"], "choose from 'flatness', 'robustness'"),
    (["eval", "--ckpt", "missing.pt", "--suite", "flatness,speed"], "invalid choice: 'speed'"),
    (["eval", "--ckpt", "missing.pt", "--suite", "flatness,robustness"], "checkpoint not found"),
])
def test_bad_input_is_one_line_exit_2(argv, expect, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("flatkd: error:")
    assert expect in err
    assert not (tmp_path / "x").exists()          # nothing half-written


@pytest.mark.parametrize("command", [[], ["train"], ["eval"], ["report"], ["demo"], ["config"]])
def test_help_states_defaults_and_cites_no_internal_document(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(command + ["--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "SPEC" not in text and "§" not in text and "``" not in text
    assert "(default: None)" not in text
    if command in (["train"], ["eval"]):
        assert "examples:" in text and "flatkd config" in text
    if command == ["eval"]:
        assert "(default: student)" in text and "student, teacher, or any other it holds" in text


def test_version_and_config_listing(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("flatkd ")
    for which, key, shown in (("train", "kd.teacher_init", "independent"),
                              ("eval", "hessian.samples", "256")):
        assert main(["config", which]) == 0
        out = capsys.readouterr().out
        assert f"{key} = {shown}\n" in out
        assert "SPEC" not in out and "§7" not in out and "``" not in out
        lines = out.splitlines()
        meanings = lines[1::2]
        assert len(meanings) == len(lines) // 2 and all(m.strip() for m in meanings), \
            [lines[i - 1] for i, m in enumerate(lines) if i % 2 and not m.strip()]
    assert main(["config", "train", "--dataset", "digits"]) == 0
    assert "batch_size = 16\n" in capsys.readouterr().out


@pytest.mark.parametrize("argv,suggestion", [
    (["train", "--method", "spaced-onlin", "--arch", "resnet8", "--dataset", "digits", "--out", "x"],
     "did you mean 'spaced-online'"),
    (["train", "--method", "online", "--arch", "resnet9", "--dataset", "digits", "--out", "x"],
     "did you mean 'resnet8'"),
    (["trian"], "did you mean 'train'?"),
    (["eval", "--ckpt", "x.pt", "--suite", "flatnes"], None),      # --suite has its own check
])
def test_mistyped_names_get_a_suggestion(argv, suggestion, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    if suggestion:
        assert suggestion in err


def test_registry_lookup_suggests_the_closest_name():
    from flatkd.errors import FlatkdError
    from flatkd.training import METHODS
    with pytest.raises(FlatkdError, match="did you mean 'spaced-self'"):
        METHODS.get("spaced-slef")
    with pytest.raises(FlatkdError) as e:
        METHODS.get("zzzzzz")
    assert "did you mean" not in str(e.value)


def test_third_party_text_becomes_one_plain_line(capsys, monkeypatch):
    """A FlatkdError carrying a library's multi-line, colour-coded text prints as one line."""
    from flatkd import cli
    from flatkd.errors import FlatkdError, one_line

    assert one_line("a \x1b[1mbold\x1b[0m\n\tb  c\n") == "a bold b c"

    def boom(_args):
        raise FlatkdError("report failed: \x1b[31mred\x1b[0m\n  second line")
    monkeypatch.setitem(cli.COMMANDS, "report", boom)
    assert cli.main(["report", "r.json", "--out", "o"]) == 2
    assert capsys.readouterr().err == "flatkd: error: report failed: red second line\n"


def test_train_help_lists_methods_with_a_line_each_not_in_usage(capsys):
    from flatkd.training import METHODS
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    usage = out.split("\n\n")[0]
    assert "--method METHOD" in usage and "spaced-online" not in usage
    listed = out.split("methods (--method):\n")[1].splitlines()
    assert [line.split()[0] for line in listed] == METHODS.names()
    assert all(len(line.split(maxsplit=1)) == 2 for line in listed)     # each has a description
    assert "Deep mutual learning (Zhang et al. 2018)" in out


def test_version_and_help_do_not_import_torch():
    """``flatkd --version`` / ``--help`` build no sub-command and import no PyTorch."""
    import subprocess
    import sys
    import time
    code = ("import sys; from flatkd.cli import main\n"
            "for argv in (['--version'], ['--help']):\n"
            "    try: main(argv)\n"
            "    except SystemExit: pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("NO-TORCH"), out.stdout
    assert time.perf_counter() - start < 5        # a generous bound; torch alone takes ~3 s
