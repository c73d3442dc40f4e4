"""A record is data: ``verify``, ``matrix`` and the pytest plugin never import or call a model class a record
names unless the user trusts the record; a user-named or trusted class is constructed only if it is a
torch.nn.Module subclass; and a record travels with its project (the class's file is stored relative to the
record, with its sha256).

Every payload record is built here from a legitimate one by rewriting its manifest, the way an attacker
would; each test checks the verdict, the exit code, the one-line message, and that the canary file the
payload would create never appears (whatever process would have run it: the CLI, a pytest run, a matrix).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import compat  # noqa: E402
from compat.records.model_class import RecordNamesCode  # noqa: E402
from compat.records.record import read  # noqa: E402
from compat.records.matrix import replay_options, verify_command  # noqa: E402
from convert.errors import BadInputError, ModelClassError  # noqa: E402

from cli_run import modelport  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ROOT = Path(__file__).resolve().parents[3]
TORCH = ROOT / "fixtures" / "torch"
MLP_ARGS = {"in_features": 20, "hidden": 32, "classes": 3}
EVIL_SOURCE = ("import pathlib, torch\npathlib.Path({canary!r}).touch()\n"
               "class Net(torch.nn.Module):\n    def __init__(self, **kw):\n        super().__init__()\n"
               "        self.hidden = torch.nn.Linear(20, 32)\n        self.head = torch.nn.Linear(32, 3)\n"
               "    def forward(self, x):\n        return self.head(torch.relu(self.hidden(x)))\n")


@pytest.fixture(scope="module")
def made_in_ci(tmp_path_factory) -> Path:
    """A legitimate record, made as a user makes it: from ``proj/ci/`` with ``--model-class ../nets.py:MLP``."""
    proj = tmp_path_factory.mktemp("made") / "proj"
    (proj / "ci").mkdir(parents=True)
    shutil.copy(TORCH / "nets.py", proj / "nets.py")
    shutil.copy(TORCH / "mlp_state.pt", proj / "mlp_state.pt")
    done = modelport("record", "../mlp_state.pt", "--model-class", "../nets.py:MLP", "--model-args",
                     json.dumps(MLP_ARGS), "--input", "batchx20", "--exporter", "torchscript", "--rows", "64",
                     "-o", "mlp.mprec", cwd=proj / "ci")
    assert done.returncode == 0, done.stdout + done.stderr
    return proj / "ci" / "mlp.mprec"


@pytest.fixture()
def proj(tmp_path, made_in_ci) -> Path:
    """A private copy of the project the record was made in (tests change it)."""
    shutil.copytree(made_in_ci.parents[1], tmp_path / "proj")
    return tmp_path / "proj"


@pytest.fixture()
def canary(tmp_path):
    path = tmp_path / "canary"
    yield path
    assert not path.exists(), "a payload named by a record ran"


def manifest_of(record: Path) -> dict:
    with zipfile.ZipFile(record) as zf:
        return json.loads(zf.read("manifest.json"))


def rewrite_hints(src: Path, dst: Path, **changes) -> Path:
    """``src`` with its manifest's hints changed: what anyone who can write a record file can do."""
    manifest = manifest_of(src)
    manifest["hints"].update(changes)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = json.dumps(manifest).encode() if info.filename == "manifest.json" else zin.read(info)
            zout.writestr(info, data)
    return dst


def payload_record(proj: Path, kind: str, canary: Path) -> tuple[Path, str]:
    """A record in ``proj/ci`` whose manifest names code that would create ``canary``; (record, spec)."""
    record = proj / "ci" / "mlp.mprec"
    if kind == "popen":
        spec, args = "subprocess:Popen", {"args": ["touch", str(canary)]}
    elif kind == "system":
        spec, args = "os:system", {"command": f"touch {canary}"}
    else:  # a file in the project whose import alone creates the canary
        (proj / "ci" / "evil.py").write_text(EVIL_SOURCE.format(canary=str(canary)))
        spec, args = "evil.py:Net", {}
    return rewrite_hints(record, proj / "ci" / f"{kind}.mprec", model_class=spec, model_args=args), spec


def fires(spec: str, args: dict, folder: Path, canary: Path) -> bool:
    """Live control: in another process, import what ``spec`` names (from ``folder``) and call it with ``args``,
    as an unguarded loader would; True when the canary then appears."""
    code = ("import importlib, importlib.util, json, sys\nwhere, attr = sys.argv[1].rsplit(':', 1)\n"
            "if where.endswith('.py'):\n    s = importlib.util.spec_from_file_location('m', where)\n"
            "    m = importlib.util.module_from_spec(s); s.loader.exec_module(m)\n"
            "else:\n    m = importlib.import_module(where)\n"
            "getattr(m, attr)(**json.loads(sys.argv[2]))\n")
    subprocess.run([sys.executable, "-c", code, spec, json.dumps(args)], cwd=folder, capture_output=True, timeout=120)
    for _ in range(50):  # Popen returns before its child has run
        if canary.exists():
            break
        time.sleep(0.1)
    found = canary.exists()
    canary.unlink(missing_ok=True)
    return found


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


REFUSAL = re.compile(r"^modelport: (?P<record>\S+): names the model class (?P<spec>\S+); a record is data, so "
                     r"modelport imports no code it names \(pass --model-class (?P<suggest>\S+) to name the class "
                     r"yourself, or --trust if you trust whoever wrote the record\)$")
PAYLOADS = ["popen", "system", "evil-file"]


# ---------------------------------------------------------------------------------------------
# payloads: never imported, never called


@pytest.mark.parametrize("kind", PAYLOADS)
def test_the_payload_would_fire_under_an_unguarded_loader(proj, tmp_path, kind):
    """Live control for every payload below: what the record names, imported and called with its arguments
    in another process, does create the canary."""
    canary = tmp_path / "canary"
    evil, spec = payload_record(proj, kind, canary)
    assert not canary.exists()  # building the record ran nothing
    hints = manifest_of(evil)["hints"]
    assert fires(hints["model_class"], hints["model_args"], evil.parent, canary)


@pytest.mark.parametrize("kind", PAYLOADS)
def test_verify_refuses_a_record_that_names_code_without_trust(proj, canary, kind):
    evil, spec = payload_record(proj, kind, canary)
    with pytest.raises(RecordNamesCode) as info:
        compat.verify(evil)
    assert isinstance(info.value, BadInputError) and info.value.exit_code == 2
    assert info.value.named == spec and str(evil) in info.value.line()

    done = modelport("verify", evil.relative_to(proj.parent), cwd=proj.parent)
    assert done.returncode == 2, done.stdout + done.stderr
    line = one_line(done.stderr)
    match = REFUSAL.match(line)
    assert match, line
    assert match["record"] == f"proj/ci/{evil.name}" and match["spec"] == spec
    # the suggestion is the record's class as it would be passed from here: a file relative to this folder
    assert match["suggest"] == ("proj/ci/evil.py:Net" if kind == "evil-file" else spec)
    assert done.stdout == ""


@pytest.mark.parametrize("kind", PAYLOADS)
def test_matrix_refuses_it_before_building_any_environment(proj, tmp_path, canary, kind):
    evil, spec = payload_record(proj, kind, canary)
    cache = tmp_path / "envs"
    done = modelport("matrix", evil, "--with", "torch==2.13.0", cwd=proj, env={"MODELPORT_CACHE": str(cache)})
    assert done.returncode == 2, done.stdout + done.stderr
    match = REFUSAL.match(one_line(done.stderr))
    assert match and match["spec"] == spec, done.stderr
    assert not cache.exists()  # nothing was installed, nothing ran in a worker either


def _pytest_in(project: Path, *extra: str) -> subprocess.CompletedProcess:
    """Plain pytest in a user's project, with this checkout's modelport (its plugin) importable."""
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra],
                          capture_output=True, text=True, cwd=project, timeout=600,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))


@pytest.mark.parametrize("kind", PAYLOADS)
def test_the_pytest_plugin_fails_the_item_and_runs_nothing(proj, canary, kind):
    evil, spec = payload_record(proj, kind, canary)
    (proj / "pyproject.toml").write_text(f'[tool.modelport]\nrecords = ["ci/{evil.name}"]\n')
    done = _pytest_in(proj)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "1 failed" in out
    assert f"modelport: {evil}: names the model class {spec}; a record is data" in out
    suggest = "ci/evil.py:Net" if kind == "evil-file" else spec  # from the project root, where pytest runs
    assert (f'name the class yourself: [tool.modelport] model_classes = {{"ci/{evil.name}" = "{suggest}"}} or '
            f"--modelport-model-class {suggest}; or pass --modelport-trust if you trust whoever wrote the record") in out


@pytest.mark.parametrize("kind", ["popen", "system"])
def test_with_trust_a_named_callable_is_still_refused_before_it_is_called(proj, canary, kind):
    """--trust lets a record name the class, but only a torch.nn.Module subclass is ever constructed."""
    evil, spec = payload_record(proj, kind, canary)
    done = modelport("verify", evil, "--trust", cwd=proj)
    assert done.returncode == 2, done.stdout + done.stderr
    line = one_line(done.stderr)
    what = "is the class subprocess.Popen" if kind == "popen" else "is a built-in function"
    assert line.startswith(f"modelport: {evil}: model class {spec}: {what}, not a torch.nn.Module subclass; "
                           "nothing was called"), line
    with pytest.raises(ModelClassError):
        compat.verify(evil, trust=True)


@pytest.mark.parametrize("front", ["cli", "api"])
def test_a_callable_given_on_the_command_line_is_refused_too(proj, canary, front):
    record = proj / "ci" / "mlp.mprec"
    args = {"args": ["touch", str(canary)]}
    if front == "api":
        with pytest.raises(ModelClassError, match="is the class subprocess.Popen, not a torch.nn.Module subclass"):
            compat.verify(record, model_class="subprocess:Popen", model_args=args)
        return
    done = modelport("verify", record, "--model-class", "subprocess:Popen", "--model-args", json.dumps(args))
    assert done.returncode == 2
    assert "model class subprocess:Popen: is the class subprocess.Popen, not a torch.nn.Module subclass; " \
           "nothing was called" in one_line(done.stderr)


def test_a_class_the_user_names_replaces_the_records_and_the_records_code_is_never_imported(proj, canary):
    evil, _ = payload_record(proj, "evil-file", canary)
    done = modelport("verify", evil, "--model-class", "proj/nets.py:MLP", "--no-reconvert", cwd=proj.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS" in done.stdout


# ---------------------------------------------------------------------------------------------
# the legitimate ways: a class the user names, or --trust; from any folder


def test_what_record_stores_is_relative_to_the_record_with_the_sources_hash(made_in_ci):
    hints = manifest_of(made_in_ci)["hints"]
    assert hints["model_class"] == "../nets.py:MLP" and hints["model_args"] == MLP_ARGS
    assert hints["model_class_sha256"] == hashlib.sha256((made_in_ci.parents[1] / "nets.py").read_bytes()).hexdigest()


@pytest.mark.parametrize("how", ["model-class", "trust"])
@pytest.mark.parametrize("where", ["root", "elsewhere", "moved"])
def test_a_record_made_in_ci_verifies_from_any_folder(proj, tmp_path, how, where):
    """The issue's case: made in proj/ci/ with ../nets.py:Net, verified from other folders and after the whole
    project moved."""
    if where == "moved":
        proj = Path(shutil.move(str(proj), str(tmp_path / "checkout" / "elsewhere" / "proj")))
    cwd = {"root": proj, "elsewhere": tmp_path, "moved": proj.parent}[where]
    cwd.mkdir(parents=True, exist_ok=True)
    record = os.path.relpath(proj / "ci" / "mlp.mprec", cwd)
    extra = ["--trust"] if how == "trust" else ["--model-class", os.path.relpath(proj / "nets.py", cwd) + ":MLP"]
    done = modelport("verify", record, *extra, "--report", tmp_path / "v.json", cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((tmp_path / "v.json").read_text())["records"][0]
    assert data["verdict"] == "pass" and data["status"] == "ok"
    assert {c["name"] for c in data["comparisons"]} >= {"native now vs then", "reconverted vs native now"}


def test_the_python_api_takes_the_same_choices(proj, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    record = proj / "ci" / "mlp.mprec"
    assert compat.verify(record, trust=True, reconvert=False).passed
    assert compat.verify(record, model_class=str(proj / "nets.py") + ":MLP", reconvert=False).passed
    # the record's constructor arguments are used with the user's class; the user's --model-args replace them
    wrong = compat.verify(record, model_class=str(proj / "nets.py") + ":MLP", model_args={"hidden": 8},
                          reconvert=False)
    assert not wrong.passed and wrong.status == "load-failed" and "hidden.weight" in wrong.reason


def test_the_class_file_missing_beside_the_record_is_bad_input_naming_both(proj, tmp_path):
    (proj / "nets.py").unlink()
    done = modelport("verify", proj / "ci" / "mlp.mprec", "--trust", cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    line = one_line(done.stderr)
    assert line.startswith(f"modelport: {proj / 'ci' / 'mlp.mprec'}: the model class file the record names is not "
                           f"there: {proj / 'nets.py'} (stored as ../nets.py)"), line
    assert "no longer loads" not in line


def test_an_absolute_stored_path_that_does_not_exist_here_is_exit_2_not_a_regression(proj, tmp_path):
    absent = tmp_path / "ci-runner-that-is-not-here" / "nets.py"
    record = rewrite_hints(proj / "ci" / "mlp.mprec", proj / "ci" / "abs.mprec", model_class=f"{absent}:MLP")
    done = modelport("verify", record, "--trust", cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    line = one_line(done.stderr)
    assert f"the model class file the record names is not there: {absent}" in line and str(record) in line
    given = modelport("verify", record, "--model-class", "nets.py:MLP", cwd=tmp_path)  # not in this folder
    assert given.returncode == 2
    assert f"the --model-class file is not there: {tmp_path / 'nets.py'}" in one_line(given.stderr)


@pytest.mark.parametrize("how", ["trust", "same-file"])
def test_a_model_source_changed_since_the_record_fails_like_a_changed_artifact(proj, tmp_path, how):
    nets = proj / "nets.py"
    nets.write_text(nets.read_text() + "\n# edited after the record was made\n")
    extra = ["--trust"] if how == "trust" else ["--model-class", f"{nets}:MLP"]
    done = modelport("verify", proj / "ci" / "mlp.mprec", *extra, "--report", tmp_path / "v.json", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"model class source changed since record: {nets}" in flat(done.stdout)
    data = json.loads((tmp_path / "v.json").read_text())["records"][0]
    assert data["status"] == "artifact-changed" and data["verdict"] == "fail"


# ---------------------------------------------------------------------------------------------
# the pytest plugin's configuration, and what matrix passes on


@pytest.mark.parametrize("how", ["table", "option", "trust"])
def test_the_pytest_plugin_takes_the_class_from_its_configuration(proj, how):
    table = '\nmodel_classes = {"ci/*.mprec" = "nets.py:MLP"}\n' if how == "table" else "\n"
    (proj / "pyproject.toml").write_text('[tool.modelport]\nrecords = ["ci/*.mprec"]' + table)
    extra = {"table": [], "option": ["--modelport-model-class", "nets.py:MLP"], "trust": ["--modelport-trust"]}[how]
    done = _pytest_in(proj, "--modelport-no-reconvert", *extra)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_matrix_passes_the_users_choice_on_made_independent_of_the_folder(proj, tmp_path, canary):
    record_path = proj / "ci" / "mlp.mprec"
    rec = read(record_path)
    as_file = replay_options(rec, record_path, model_class="proj/nets.py:MLP", cwd=tmp_path)
    assert as_file.model_class == f"{proj / 'nets.py'}:MLP" and as_file.pythonpath == "" and not as_file.trust
    as_module = replay_options(rec, record_path, model_class="nets:MLP", model_args={"hidden": 32}, cwd=proj)
    assert as_module.model_class == "nets:MLP" and as_module.pythonpath == str(proj)
    cmd = verify_command("python", record_path, tmp_path / "v.json", as_module)
    assert cmd[-4:] == ["--model-class", "nets:MLP", "--model-args", '{"hidden": 32}']
    trusted = replay_options(rec, record_path, trust=True, cwd=tmp_path)
    assert trusted.model_class is None and verify_command("python", record_path, tmp_path / "v.json",
                                                          trusted)[-1] == "--trust"
    evil, spec = payload_record(proj, "popen", canary)
    with pytest.raises(RecordNamesCode):
        replay_options(read(evil), evil, cwd=tmp_path)


@pytest.mark.parametrize("change, expected", [
    ({"model_class": ["subprocess", "Popen"]}, "corrupt record: its model class entry is not a string"),
    ({"model_args": ["touch", "x"]}, "corrupt record: its model class entry is not a string"),
    ({"inputs": [{"name": "x", "dtype": "complex128", "shape": [0]}]}, "corrupt record: its input hints are unreadable"),
])
def test_hints_no_record_writer_writes_are_a_corrupt_record(proj, tmp_path, change, expected):
    record = rewrite_hints(proj / "ci" / "mlp.mprec", proj / "ci" / "odd.mprec", **change)
    done = modelport("verify", record, "--model-class", f"{proj / 'nets.py'}:MLP", cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    line = one_line(done.stderr)
    assert line.startswith(f"modelport: {record}: {expected}"), line
