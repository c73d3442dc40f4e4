"""The README's examples run, so they cannot drift from the code: every ```python block, and the cheap console
commands (scikit-learn ``inspect`` / ``convert`` / ``check`` / ``record`` and ``verify`` of those records, static
``audit``), in a folder holding the files they name, copied from the fixtures. The torch, TensorFlow, full
audit and ``matrix`` examples are not run here (minutes, or virtualenvs); their commands are tested in tests/cli."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SKLEARN = ROOT / "fixtures" / "sklearn"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
CHEAP = ("inspect", "convert", "check", "record")  # of scikit-learn files; and `audit --static`, sklearn `verify`
SKLEARN_FILES = (".joblib", ".pkl")


def blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(README) if lang == language]


def console_commands() -> list[str]:
    """Every ``$ modelport ...`` line of the console blocks, in order, comments included (bash drops them)."""
    return [line[2:] for body in blocks("console") for line in body.splitlines() if line.startswith("$ modelport ")]


def cheap(command: str) -> bool:
    words = shlex.split(command, comments=True)
    sub, first = words[1], next((w for w in words[2:] if not w.startswith("-")), "")
    if any("://" in w for w in words):  # stores and clusters: tests/compat/audits/test_audit_scale.py runs them
        return False                    # against a loopback S3 server and real Dask schedulers
    if sub == "audit":
        return "--static" in words
    if sub == "verify":
        return not {"--model-class", "--trust"} & set(words)  # records of scikit-learn models
    return sub in CHEAP and first.endswith(SKLEARN_FILES)


@pytest.fixture
def workspace(tmp_path) -> Path:
    """What a user of the examples has at hand: a model, its holdout rows as CSV and as .npz, a models/ folder,
    and the deploy/ folder `-o deploy/model.onnx` writes into."""
    import convert

    shutil.copy(SKLEARN / "breast_cancer_logreg.joblib", tmp_path / "model.joblib")
    shutil.copy(SKLEARN / "breast_cancer_logreg.holdout.csv", tmp_path / "holdout.csv")
    (tmp_path / "models").mkdir()
    shutil.copy(SKLEARN / "topics_tfidf_svm.pkl", tmp_path / "models" / "topics.pkl")
    shutil.copy(SKLEARN / "diabetes_gbr.joblib", tmp_path / "models" / "diabetes.joblib")
    shutil.copy(SKLEARN / "churn_columns_forest.joblib", tmp_path / "models" / "churn.joblib")
    (tmp_path / "deploy").mkdir()
    rows = np.loadtxt(tmp_path / "holdout.csv", delimiter=",", skiprows=1, dtype=np.float32)
    name = convert.load(tmp_path / "model.joblib").signature.input_names[0]
    np.savez(tmp_path / "val.npz", **{name: rows})
    return tmp_path


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="120")


def test_the_readme_has_what_this_test_runs():
    assert len(blocks("python")) >= 1
    assert sum(map(cheap, console_commands())) >= 8, console_commands()


def test_python_examples_run(workspace):
    for code in blocks("python"):
        result = subprocess.run([sys.executable, "-c", code], cwd=workspace, env=_env(), capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, f"{code}\n{result.stdout}\n{result.stderr}"
        first = result.stdout.splitlines()[0].split()
        # the conversion passed, and the probabilities' error is a number (a label's would be None)
        assert first[0] == "True" and float(first[-1]) >= 0.0, result.stdout


@pytest.mark.slow
def test_cheap_console_examples_run(workspace):
    python = shlex.quote(sys.executable)
    for command in filter(cheap, console_commands()):
        result = subprocess.run(["bash", "-c", f"{python} -m compat.cli {command[len('modelport '):]}"],
                                cwd=workspace, env=_env(), capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"$ {command}\n{result.stdout}\n{result.stderr}"
