"""environment.yml lists every package pyproject.toml requires (runtime and extras)."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch"}          # PyPI name → conda-forge name


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req.strip(), maxsplit=1)[0].lower()


def test_environment_yml_lists_everything_pyproject_requires():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = {_name(r) for r in project["dependencies"]}
    for extra in ("dev", "notebooks"):
        required |= {_name(r) for r in project["optional-dependencies"][extra]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    listed = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            listed |= {_name(d) for d in dep["pip"]}
        else:
            listed.add(_name(dep))
    missing = sorted(r for r in required if CONDA_NAMES.get(r, r) not in listed)
    assert not missing, f"environment.yml lacks {missing}"


def test_console_script_points_at_cli_main():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["flatkd"] == "flatkd.cli:main"
    from flatkd.cli import main
    assert callable(main)
