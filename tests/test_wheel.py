"""bnlib as a user installs it: a wheel built from the repository, in a fresh virtual environment
outside it, used from a folder outside it.

The wheel is built from a copy of the files the build needs, so nothing left over in the working
tree (a stale build/ folder, a module deleted since) can slip in. The environment gets the wheel
and ``torch==2.13.0`` from pip, as the README says, and nothing from the repository's .venv.
There the test runs the README's "Reusing bnlib" examples, checks what was installed, and runs
the command line experiment for one epoch.

Cost, measured on the 2-core machine while other work ran on it: building the wheel about
10 s, creating and filling the environment 1 to 2 minutes (torch is 1.2 GB in 28,000 files), the
tests 1 to 2 minutes. Removing the environment afterwards takes this disk 1.5 to 3 minutes; it
is removed all the same, so repeated runs do not leave gigabytes behind.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: What the build reads: package metadata, the package and its data.
BUILD_INPUTS = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "bnlib", "data")
TORCH = "torch==2.13.0"


def run(command: list, cwd: Path, env: dict | None = None) -> str:
    """Run a command, failing the test with its output if it fails; return its stdout."""
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, (
        f"{' '.join(map(str, command))} failed ({result.returncode}):\n"
        f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result.stdout


def readme_reuse_examples() -> list[str]:
    """The Python code blocks of the README's "Reusing bnlib" section, in order."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Reusing bnlib", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python of a fresh venv holding the wheel, a working folder outside the repository)."""
    base = tmp_path_factory.mktemp("wheel")
    assert not base.resolve().is_relative_to(ROOT)
    source = base / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, source / name)
    pip = [sys.executable, "-m", "pip"]
    # With build isolation, as for any user: the build also checks pyproject's build requirements.
    run([*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(base / "dist"), str(source)],
        cwd=base)
    (wheel,) = (base / "dist").glob("*.whl")
    venv = base / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=base)
    python = venv / "bin" / "python"
    # --no-compile: bytecode only for the modules the tests import (written on first import),
    # not for all of torch's thousands (on this disk, writing and removing files is the cost).
    run([str(python), "-m", "pip", "install", "--quiet", "--no-compile", str(wheel), TORCH],
        cwd=base)
    work = base / "work"
    work.mkdir()
    yield python, work
    shutil.rmtree(venv, ignore_errors=True)  # about 1.2 GB in 28,000 files, mostly torch


def user_env(work: Path) -> dict:
    """The environment of a user who has no clone: no BNLIB_DATA, no PYTHONPATH, fresh cache."""
    env = {k: v for k, v in os.environ.items() if k not in ("BNLIB_DATA", "PYTHONPATH")}
    return {**env, "BNLIB_CACHE_DIR": str(work / "cache"), "BNLIB_PROGRESS": "0",
            "MPLBACKEND": "Agg"}


def python_in(installed, code: str) -> str:
    python, work = installed
    return run([str(python), "-c", code], cwd=work, env=user_env(work))


def test_readme_has_the_four_reuse_examples():
    examples = readme_reuse_examples()
    assert len(examples) == 4
    assert "load_hindi_digits" in examples[0]


def test_distribution_is_not_named_bnlib_and_ships_types_and_data(installed):
    out = python_in(installed, (
        "import importlib.metadata as m, importlib.resources as r, bnlib\n"
        "print(m.packages_distributions()['bnlib'])\n"
        "print(m.version('batchnorm-measured'), bnlib.__version__)\n"
        "files = r.files('bnlib')\n"
        "print(bnlib.__file__)\n"
        "for name in ('py.typed', '_data/dhcd_digits.npz', '_data/README.md'):\n"
        "    print(name, (files / name).is_file())\n"
    )).splitlines()
    assert out[0] == "['batchnorm-measured']"
    version, init_version = out[1].split()
    assert version == init_version
    python, _ = installed
    assert Path(out[2]).is_relative_to(python.parent.parent)  # the venv's copy, not the repo's
    assert out[3:] == ["py.typed True", "_data/dhcd_digits.npz True", "_data/README.md True"]


def test_every_file_of_the_data_folder_is_installed(installed):
    shipped = python_in(installed, (
        "import importlib.resources as r\n"
        "print(sorted(p.name for p in r.files('bnlib._data').iterdir() if p.is_file()))"
    ))
    in_repository = sorted(p.name for p in (ROOT / "data").iterdir() if p.is_file())
    assert ast.literal_eval(shipped) == in_repository


def test_data_readme_inside_the_package_names_licence_and_authors(installed):
    text = python_in(installed, (
        "import importlib.resources as r\n"
        "print((r.files('bnlib') / '_data' / 'README.md').read_text(encoding='utf-8'))"
    ))
    assert "CC BY 4.0" in text and "Acharya" in text


def test_readme_data_example_loads_the_17000_training_digits(installed):
    out = python_in(installed, readme_reuse_examples()[0])
    assert "torch.Size([17000, 1, 32, 32]) torch.Size([17000])" in out
    # ... from the file inside the installed package, not from any copy of the repository.
    path = python_in(installed, "import bnlib.data as d; print(d.default_data_file())").strip()
    assert Path(path).parts[-3:] == ("bnlib", "_data", "dhcd_digits.npz")
    assert Path(path).is_relative_to(installed[0].parent.parent)


def test_readme_layer_example_matches_torch(installed):
    assert python_in(installed, readme_reuse_examples()[1]).split() == ["True", "True"]


def test_readme_reference_example_checks_the_gradient(installed):
    error = float(python_in(installed, readme_reuse_examples()[2]))
    # Central differences with h=1e-6 in float64 agree to far better than 1e-6.
    assert error < 1e-6


def test_readme_engine_example_reads_its_second_run_from_the_cache(installed):
    lines = python_in(installed, readme_reuse_examples()[3]).splitlines()
    assert lines[0].startswith("test accuracy ")
    assert lines[-1] == "True"


def test_one_epoch_of_the_command_line_experiment(installed):
    python, work = installed
    out = work / "experiment"
    run([str(python), "-m", "bnlib.experiment", "--epochs", "1", "--seeds", "1",
         "--out", str(out), "--no-cache", "--quiet",
         "--train-subset", "2000", "--test-subset", "500", "--workers", "1"],
        cwd=work, env=user_env(work))
    rows = (out / "results.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert {"model", "epoch", "test_accuracy"} <= set(header)
    models = sorted(row.split(",")[header.index("model")] for row in rows[1:])
    assert models == ["with_bn", "without_bn"]
    assert all((out / f"{name}.png").stat().st_size > 0
               for name in ("accuracy", "train_loss", "descent_path"))
