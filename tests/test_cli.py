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
        assert "(default: student)" in text and "{student,teacher}" in text


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
