"""Legacy rescue, the loader. Real legacy files (../shared/legacy-corpus, scanned first, every load through the
gate) load as saved or migrated; each failure class of the corpus manifest shows up as the change that fixed it;
each loaded model computes what an independent evaluation of its fitted arrays computes. The cases the corpus lacks
are built here: a script's own class and a library that is not installed are named (never blamed on a version), the
history table can never make the unpickler import beyond the allowlist, CRLF damage is read restored, companion files
are only ever plain arrays beside the pickle, and old models without ``n_features_in_`` get their input width from
their fitted arrays."""

from __future__ import annotations

import os
import pickle
import re
import struct
import subprocess
import sys
import warnings

import joblib
import numpy as np
import pytest
from canary import Call

import convert
from convert import adapters
from convert.adapters.sklearn import fitted, unpickle
from convert.adapters.sklearn.rescue import migrate
from convert.adapters.sklearn.adapter import estimators_in
from convert.errors import BadInputError, MissingCodeError, UnsafeArtifactError
from convert.scan import policy
from legacy_corpus import classes, params, path_of

# ------------------------------------------------------------------------------------------- the corpus


@pytest.fixture(scope="module")
def corpus_loads():
    """local_file -> (artifact, object, Migration, {key: Loaded}) for every primary, loaded once."""
    return {}


def _load(row, cache):
    if row is None:
        from legacy_corpus import manifest

        manifest()  # fails: the corpus is missing
    name = row["local_file"]
    if name not in cache:
        artifact = convert.inspect(path_of(row))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj, migration = unpickle.load_migrating(artifact)
            keys = [str(k) for k, _ in estimators_in(obj)] or [None]
            loaded = {k: convert.load(artifact, state_key=k) for k in keys}
        cache[name] = (artifact, obj, migration, loaded)
    return cache[name]


@pytest.mark.parametrize("row", params())
def test_every_corpus_file_loads_through_the_gate(row, corpus_loads):
    """The scan says safe, the gate lets it through, the migrating loader reads it, and every estimator it holds
    has a signature of its own: no file stops at "needs input" for want of n_features_in_."""
    artifact, obj, migration, loaded = _load(row, corpus_loads)
    assert artifact.safety == "safe", [f.what for f in artifact.findings]
    for key, one in loaded.items():
        assert one.signature.inputs and one.signature.outputs, (key, one.signature.describe())
        width = one.signature.inputs[0].shape[-1]
        assert isinstance(width, int) and width > 0, one.signature.describe()
        assert one.facts["migrated"] == (migration.to_list() if migration.migrated else [])


def _changes(migration, kind=None):
    return [c for c in migration.changes if kind is None or c.kind == kind]


def _old_names(migration) -> list[str]:
    return [c.what.split(" -> ")[0] for c in _changes(migration, "name")]


def _removed_in_notes(row) -> list[str]:
    """The classes the collector found removed (rename_notes: 'missing: module.Class REMOVED ...')."""
    return [m.rpartition(".")[2] for m in re.findall(r"missing: ([\w.]+) REMOVED", row["rename_notes"])]


# what each failure class of the manifest must have left in the migration (the change that fixed it)
EVIDENCE = {
    "MODULE_RENAMED": lambda row, m, a: any(
        name.rpartition(".")[0] in row["sklearn_module_paths"].split(",") for name in _old_names(m)),
    "EXTERNALS_JOBLIB": lambda row, m, a: any(n.startswith("sklearn.externals.joblib.") for n in _old_names(m)),
    "CLASS_REMOVED": lambda row, m, a: all(any(cls in c.what for c in m.changes) for cls in _removed_in_notes(row))
    and bool(_removed_in_notes(row)),
    "CLASS_MOVED": lambda row, m, a: "sklearn.tree._tree.ClassificationCriterion" in _old_names(m),
    "TREE_NODE_DTYPE_PRE_1_3": lambda row, m, a: any("missing_go_to_left" in c.what for c in _changes(m, "layout")),
    "TREE_ANCIENT_FORMAT": lambda row, m, a: any("parallel arrays" in c.what for c in _changes(m, "layout")),
    "PY2_STR_OPCODES": lambda row, m, a: m.python2 and any("Python 2" in c.what for c in _changes(m, "encoding")),
    "PROTOCOL_0": lambda row, m, a: a.details["pickle_scan"]["protocol"] == 0 and m.python2,
    "PY2_MODULE_NAMES": lambda row, m, a: {"copy_reg", "__builtin__"} & {g.module for g in a.globals}
    and not any(n.startswith(("copy_reg", "__builtin__")) for n in _old_names(m)),  # pickle's own fix_imports
    "JOBLIB_MULTIFILE": lambda row, m, a: any("companion" in c.what for c in _changes(m, "container")),
    "JOBLIB_ZF_CONTAINER": lambda row, m, a: any("ZF container" in c.what for c in _changes(m, "container")),
    "STATE_DRIFT": lambda row, m, a: any(c.kind in ("attribute", "fill", "rebuild", "parameter") for c in m.changes),
    "NAMES_RESOLVE": lambda row, m, a: not _changes(m, "name"),
}


def test_every_failure_class_of_the_manifest_is_covered():
    from legacy_corpus import primaries

    seen = set().union(*(classes(r) for r in primaries()))
    assert seen == set(EVIDENCE), seen ^ set(EVIDENCE)


@pytest.mark.parametrize("row", params())
def test_each_failure_class_shows_as_the_change_that_fixed_it(row, corpus_loads):
    artifact, obj, migration, loaded = _load(row, corpus_loads)
    missing = [c for c in sorted(classes(row)) if not EVIDENCE[c](row, migration, artifact)]
    assert not missing, (missing, migration.lines())
    if classes(row) - {"NAMES_RESOLVE", "PY2_MODULE_NAMES"}:
        assert migration.migrated, migration.lines()


@pytest.mark.parametrize("row", params())
def test_every_corpus_model_computes_what_its_fitted_arrays_say(row, corpus_loads):
    """The migrated model (today's scikit-learn methods over brought-forward state) against the formulas of the
    releases that wrote these files, applied to the fitted arrays (convert.adapters.sklearn.rescue.reference)."""
    from compat.checks.inputs import synthesize

    artifact, obj, migration, loaded = _load(row, corpus_loads)
    sklearn = adapters.get("sklearn")
    for key, one in loaded.items():
        independent = sklearn.independent(one)
        assert independent is not None, f"no exact evaluation of {one.facts['estimator']}"
        run, how = independent
        feeds = next(synthesize(one.signature, rows=200, seed=3).batches(200))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            native, reference = one.run(feeds), run(feeds)
        for name, want in reference.items():
            got = native[name]
            if np.asarray(want).dtype.kind in "fc":
                np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, rtol=1e-7, atol=1e-9,
                                           err_msg=f"{key} {name} ({how})")
            else:
                assert np.array_equal(np.asarray(got).astype(str), np.asarray(want).astype(str)), (key, name, how)


# --------------------------------------------------------------------------------------- the allowlist


def _reduce_pickle(module: str, name: str, arg: str) -> bytes:
    """A protocol-2 pickle that calls ``module.name(arg)``: the classic payload shape, written byte by byte."""
    data = arg.encode()
    return (b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n" + b"X" + struct.pack("<I", len(data))
            + data + b"\x85R.")


@pytest.fixture
def poisoned_history(monkeypatch):
    """The history table with one row pointing an allowlisted old name at os.system (as a bad edit of
    legacy_names.json would)."""
    table = policy.rules()
    policy._legacy.cache_clear()
    monkeypatch.setitem(table.legacy_classes, ("sklearn.ensemble._gb_losses", "LeastSquaresError"),
                        ("os", "system", "test"))
    yield
    policy._legacy.cache_clear()


def test_a_mapped_name_is_only_ever_an_allowlisted_name(tmp_path, canary, poisoned_history):
    """``sklearn.ensemble._gb_losses.LeastSquaresError`` is on the allowlist (real 1.2/1.3 files hold it) and no
    longer imports; were the table to map it onto os.system, the migrating unpickler must refuse, not call it."""
    path = tmp_path / "gbr.pkl"
    path.write_bytes(_reduce_pickle("sklearn.ensemble._gb_losses", "LeastSquaresError", canary.command))
    artifact = convert.inspect(path)
    assert artifact.safety == "safe"  # the scan trusts the allowlisted name: the loader's own check is the guard
    with pytest.raises(UnsafeArtifactError) as refused:
        convert.load(artifact)
    assert "os.system" in refused.value.message and refused.value.exit_code == 1
    with pytest.raises(UnsafeArtifactError):
        migrate.load(artifact, trust=False)  # the loader itself, without the gate in front
    from compat.cli import main

    assert main(["convert", str(path), "-o", str(tmp_path / "out.onnx")]) == 1
    assert not canary.fired() and not (tmp_path / "out.onnx").exists()


def test_the_mapped_payload_is_live(tmp_path, canary):
    """Control: an unpickler that followed such a mapping without the allowlist check runs the payload."""
    from canary import Canary

    control = Canary(tmp_path / "control")
    path = tmp_path / "gbr.pkl"
    path.write_bytes(_reduce_pickle("sklearn.ensemble._gb_losses", "LeastSquaresError", control.command))
    code = ("import os, pickle, sys\n"
            "class U(pickle.Unpickler):\n"
            "    def find_class(self, m, n):\n"
            "        return os.system if (m, n) == ('sklearn.ensemble._gb_losses', 'LeastSquaresError') "
            "else super().find_class(m, n)\n"
            "U(open(sys.argv[1], 'rb')).load()\n")
    subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=120)
    assert control.fired()


def test_migration_never_imports_beyond_the_allowlist_even_for_moved_modules(tmp_path, canary):
    """A name under a moved module path (sklearn.svm.classes) that is no class at all: the scan calls it unsafe,
    the gate refuses, and the migrating unpickler on its own would too."""
    path = tmp_path / "svc.pkl"
    path.write_bytes(_reduce_pickle("sklearn.svm.classes", "system", canary.command))
    artifact = convert.inspect(path)
    assert artifact.safety == "unsafe"
    with pytest.raises(UnsafeArtifactError):
        convert.load(artifact)
    with pytest.raises(UnsafeArtifactError):
        migrate.load(artifact, trust=False)
    assert not canary.fired()


# -------------------------------------------------------------------------------------- missing code


class TemplateMatch:
    """A transformer the saving script defined in __main__."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X


@pytest.fixture
def old_sklearn_pickles(tmp_path, monkeypatch, data):
    """Pipelines pickled as scikit-learn 0.24.2 wrote them, holding a class of the saving script and a class of
    a library that is not installed here (xgboost)."""
    import types

    import sklearn.base
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    X, y, _ = data
    monkeypatch.setattr(sklearn.base, "__version__", "0.24.2")
    main = sys.modules["__main__"]
    TemplateMatch.__module__ = "__main__"
    monkeypatch.setattr(main, "TemplateMatch", TemplateMatch, raising=False)
    fake = types.ModuleType("xgboost.core")
    booster = type("Booster", (), {"__module__": "xgboost.core"})
    fake.Booster = booster
    monkeypatch.setitem(sys.modules, "xgboost", types.ModuleType("xgboost"))
    monkeypatch.setitem(sys.modules, "xgboost.core", fake)
    files = {}
    pipe = Pipeline([("match", TemplateMatch()), ("lr", LogisticRegression().fit(X, y))])
    files["main"] = tmp_path / "main.pkl"
    files["main"].write_bytes(pickle.dumps(pipe, protocol=4))
    files["xgboost"] = tmp_path / "xgb.pkl"
    files["xgboost"].write_bytes(pickle.dumps({"booster": booster(), "scaler": LogisticRegression().fit(X, y)},
                                              protocol=4))
    TemplateMatch.__module__ = __name__
    monkeypatch.undo()
    return files


def test_a_class_of_the_saving_script_is_named_not_blamed_on_a_version(old_sklearn_pickles):
    from compat.audits.diagnose import classify

    artifact = convert.inspect(old_sklearn_pickles["main"])
    assert artifact.saved_with["sklearn"] == "0.24.2" and artifact.safety == "suspicious"
    with pytest.raises(UnsafeArtifactError):
        convert.load(artifact)  # not without --trust
    with pytest.raises(MissingCodeError) as missing:
        convert.load(artifact, trust=True)
    error = missing.value
    assert error.exit_code == 2 and error.missing[0][0] == "__main__.TemplateMatch"
    assert "__main__.TemplateMatch" in error.message and "Pipeline.steps[0][1]" in error.message
    assert "defined by the script that saved it" in error.message and "define or import TemplateMatch" in error.hint
    status, category, reason = classify(error, artifact)
    assert (status, category) == ("failed", "missing-class")
    assert "scikit-learn" not in reason, reason


def test_a_library_that_is_not_installed_is_named(old_sklearn_pickles):
    from compat.audits.diagnose import classify

    artifact = convert.inspect(old_sklearn_pickles["xgboost"])
    with pytest.raises(MissingCodeError) as missing:
        convert.load(artifact, trust=True, state_key="scaler")
    assert "xgboost.core.Booster" in missing.value.message
    assert "module xgboost is not installed here" in missing.value.message and "install xgboost" in missing.value.hint
    assert classify(missing.value, artifact)[1] == "missing-class"


def test_the_cli_names_what_is_missing_in_one_line(old_sklearn_pickles):
    from cli_run import modelport

    done = modelport("convert", old_sklearn_pickles["main"], "--trust")
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip()
    assert "\n" not in line and "Traceback" not in done.stderr
    assert "__main__.TemplateMatch" in line and "defined by the script that saved it" in line


# ----------------------------------------------------------------------------------------------- CRLF


def test_a_crlf_mangled_pickle_is_read_restored(tmp_path, data):
    from sklearn.linear_model import LogisticRegression

    X, y, _ = data
    model = LogisticRegression().fit(X, y)
    raw = pickle.dumps(model, protocol=2)
    assert b"\n" in raw and b"\r\n" not in raw
    path = tmp_path / "model.pkl"
    path.write_bytes(raw.replace(b"\n", b"\r\n"))
    with pytest.raises(Exception):
        pickle.loads(path.read_bytes())  # as the bytes are, no unpickler reads it
    artifact = convert.inspect(path)
    assert artifact.safety == "unknown" and artifact.details["restored_safety"] == "safe"
    loaded = convert.load(artifact)
    assert any(c["kind"] == "container" and "line endings restored" in c["what"] for c in loaded.facts["migrated"])
    rows = X[:20].astype(np.float32)
    np.testing.assert_array_equal(loaded.run({"X": rows})["probabilities"], model.predict_proba(rows.astype(np.float64)))


def test_a_crlf_mangled_payload_stays_refused(tmp_path, canary):
    """Restoring line endings never opens the gate to what the restored bytes would run."""
    from canary import Canary

    def payload(bird):  # a newline inside a length-prefixed string: the converted stream breaks off there
        return pickle.dumps(Call(os.system, bird.command + " #\n"), protocol=2).replace(b"\n", b"\r\n")

    path = tmp_path / "evil.pkl"
    path.write_bytes(payload(canary))
    artifact = convert.inspect(path)
    assert artifact.details.get("corrupt") and artifact.details.get("restored_safety") == "unsafe"
    assert artifact.safety in ("unsafe", "unknown")
    for trust in (False, True):
        with pytest.raises((UnsafeArtifactError, BadInputError)):
            convert.load(artifact, trust=trust)
    assert not canary.fired()
    live = Canary(tmp_path / "live")  # control: the same bytes, restored and loaded for real, run
    control = tmp_path / "control.pkl"
    control.write_bytes(payload(live).replace(b"\r\n", b"\n"))
    live.load_in_subprocess(control)
    assert live.fired()


# ----------------------------------------------------------------------------------- companion files


def _ndwrapper_pickle(filename: str) -> bytes:
    """joblib < 0.10's multi-file layout: an NDArrayWrapper naming its array's file beside the pickle."""
    state = {"filename": filename, "subclass": np.ndarray, "allow_mmap": False}
    raw = pickle.dumps(state, protocol=2)
    return (b"\x80\x02cjoblib.numpy_pickle_compat\nNDArrayWrapper\n)\x81" + raw[2:-1] + b"b.")


def test_companion_files_are_plain_arrays_beside_the_pickle(tmp_path, canary):
    np.save(tmp_path / "m.pkl_01.npy", np.arange(6.0))
    good = tmp_path / "m.pkl"
    good.write_bytes(_ndwrapper_pickle("m.pkl_01.npy"))
    obj, migration = migrate.load(convert.inspect(good))
    np.testing.assert_array_equal(obj, np.arange(6.0))
    assert any("companion" in c.what for c in migration.changes)
    outside = tmp_path / "out.pkl"
    outside.write_bytes(_ndwrapper_pickle("../m.pkl_01.npy"))
    with pytest.raises(BadInputError, match="points elsewhere"):
        migrate.load(convert.inspect(outside))
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(_ndwrapper_pickle("evil.pkl_01.npy"))
    np.save(tmp_path / "evil.pkl_01.npy", np.array([canary.payload()], dtype=object), allow_pickle=True)
    artifact = convert.inspect(evil)
    assert artifact.safety != "safe"  # the scan reads companions as np.load would
    with pytest.raises((UnsafeArtifactError, BadInputError)):
        convert.load(artifact)
    with pytest.raises(ValueError, match="allow_pickle"):
        migrate.load(artifact, trust=False)  # the loader alone never unpickles a companion
    assert not canary.fired()


# ------------------------------------------------------------------------------------------- input width


def _widthless(est):
    for attr in ("n_features_in_", "feature_names_in_"):
        if attr in vars(est):
            delattr(est, attr)
    return est


@pytest.fixture(scope="module")
def widthless_models():
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import BernoulliNB, GaussianNB, MultinomialNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 7))
    y = (X[:, 0] > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models = {
            "StandardScaler": StandardScaler().fit(X), "MinMaxScaler": MinMaxScaler().fit(X),
            "MaxAbsScaler": MaxAbsScaler().fit(X), "PCA": PCA(3).fit(X), "KMeans": KMeans(3, n_init=2).fit(X),
            "GaussianNB": GaussianNB().fit(X, y), "MultinomialNB": MultinomialNB().fit(np.abs(X), y),
            "BernoulliNB": BernoulliNB().fit(X, y), "LogisticRegression": LogisticRegression().fit(X, y),
            "SVC": SVC().fit(X, y), "KNeighborsClassifier": KNeighborsClassifier().fit(X, y),
            "MLPClassifier": MLPClassifier(max_iter=30).fit(X, y), "DecisionTree": DecisionTreeClassifier().fit(X, y),
            "RandomForest": RandomForestClassifier(n_estimators=3).fit(X, y),
        }
    for model in models.values():
        _widthless(model)
        for inner in getattr(model, "estimators_", ()):
            _widthless(inner)
    return models, X.shape[1]


def test_input_width_is_read_from_the_fitted_arrays(tmp_path, widthless_models):
    models, width = widthless_models
    for name, model in models.items():
        assert not hasattr(model, "n_features_in_"), name
        found, source = fitted.input_width(model)
        assert found == width, (name, found, source)
        path = tmp_path / f"{name}.joblib"
        joblib.dump(model, path)
        loaded = convert.load(path)
        assert loaded.signature.inputs[0].shape == ("batch", width), (name, loaded.signature.describe())
        assert any(f"input width {width} read from" in n for n in loaded.notes), (name, loaded.notes)


def test_label_encoders_take_one_column_and_an_estimator_without_arrays_has_no_width():
    from sklearn.preprocessing import LabelEncoder
    from sklearn.dummy import DummyClassifier

    assert fitted.input_width(LabelEncoder().fit(["a", "b"])) == (1, "classes_")
    assert fitted.input_width(DummyClassifier().fit([[0], [1]], [0, 1])) == (None, None)  # nothing guessed
    assert fitted.input_width(object()) == (None, None)


# --------------------------------------------------------------------------------- nothing to migrate


def test_a_file_of_this_release_loads_as_it_is(tmp_path, data):
    from sklearn.ensemble import RandomForestClassifier

    X, y, _ = data
    path = tmp_path / "forest.joblib"
    joblib.dump(RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y), path)
    loaded = convert.load(path)
    assert loaded.facts["migrated"] == [] and not any("migrated" in n for n in loaded.notes)
    artifact = convert.inspect(path)
    from convert.artifact import will_migrate

    assert will_migrate(artifact) == []


def test_missing_records_never_call_anything_and_never_pickle_again():
    record_class = migrate.missing_class("somewhere.else", "Thing", "1.4")
    record = record_class(1, 2)
    record.__setstate__({"a": 1})
    assert record.args == (1, 2) and record.state == {"a": 1} and record_class.qualname() == "somewhere.else.Thing"
    with pytest.raises(TypeError, match="missing here"):
        pickle.dumps(record)
