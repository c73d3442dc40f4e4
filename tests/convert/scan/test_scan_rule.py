"""The verdict on a pickled name is a written rule (convert/scan/policy.py), not a list of examples.

Names here are chosen from outside what the rule was built around: gadgets of the public advisories against pickle
scanners in modules no explicit rule names, network and process clients, the classes of projects, and the old
names that real legacy scikit-learn files carry (the corpus in ../shared/legacy-corpus, scanned, never loaded).
The payload rows with live controls for the same rule are the ``rule/`` rows of test_scan_techniques.py.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

import convert
from convert.scan.policy import LEGACY_PATH, RULE, classify_global, is_allowed, legacy_name, rules

ROOT = Path(__file__).resolve().parents[3]
CORPUS = Path("/work/shared/legacy-corpus")


@pytest.mark.parametrize("module,name,verdict", [
    # the standard library, off the allowlist: unsafe, whatever the module (none of these has an explicit rule)
    ("uuid", "_get_command_stdout", "unsafe"),
    ("logging.config", "listen", "unsafe"),
    ("lib2to3.pgen2.pgen", "generate_grammar", "unsafe"),
    ("platform", "_syscmd_file", "unsafe"),
    ("imaplib", "IMAP4_SSL", "unsafe"),
    ("_pyrepl.main", "interactive_console", "unsafe"),  # a stdlib module of Python 3.13, not of this one
    ("copy_reg", "add_extension", "unsafe"),  # a Python 2 name the unpickler maps to copyreg
    ("mypkg.helpers", "uuid._get_command_stdout", "unsafe"),  # reached through an attribute
    # a framework's own packages, off the allowlist
    ("torch.utils.data", "DataLoader", "unsafe"),
    ("torch._dynamo.utils", "counters", "unsafe"),
    ("tensorflow.io", "write_file", "unsafe"),
    ("keras.src.saving.saving_api", "load_model", "unsafe"),
    ("tf_keras.models", "load_model", "unsafe"),
    ("scipy.io", "savemat", "unsafe"),
    ("joblib", "Parallel", "unsafe"),
    ("sklearn.datasets", "fetch_openml", "unsafe"),
    ("sklearn.linear_model._logistic", "LogisticRegression.fit", "unsafe"),  # an allowlisted class's method
    ("numpy", "fromregex", "unsafe"),
    # network and process clients
    ("httpx", "get", "unsafe"),
    ("aiohttp.client", "ClientSession", "unsafe"),
    ("urllib3", "PoolManager", "unsafe"),
    ("paramiko.client", "SSHClient", "unsafe"),
    ("pexpect", "spawn", "unsafe"),
    ("fsspec", "open_files", "unsafe"),
    # pandas: data structures are a project's classes as far as the rule goes; its readers are explicit rules
    ("pandas.core.frame", "DataFrame", "suspicious"),
    ("pandas", "read_csv", "unsafe"),
    ("pandas.io.parsers.readers", "read_csv", "unsafe"),
    ("pandas", "eval", "unsafe"),
    # the classes of the project that saved the file
    ("__main__", "Net", "suspicious"),
    ("mypkg.layers", "Dense", "suspicious"),
    ("xgboost.core", "Booster", "suspicious"),
    # benign types real files hold (generated into the allowlist by make_allowlist.py)
    ("datetime", "datetime", "safe"),
    ("argparse", "Namespace", "safe"),
    ("collections", "defaultdict", "safe"),
    ("numpy", "log10", "safe"),
    ("sklearn.metrics._classification", "f1_score", "safe"),
    ("torch.nn.modules.pooling", "MaxPool2d", "safe"),
    ("torch._utils", "_rebuild_qtensor", "safe"),
    ("__builtin__", "set", "safe"),
    # old names, through the history table
    ("sklearn.svm.classes", "SVC", "safe"),
    ("sklearn.tree.tree", "DecisionTreeClassifier", "safe"),
    ("sklearn.externals.joblib.numpy_pickle", "NumpyArrayWrapper", "safe"),
    ("sklearn.neighbors.dist_metrics", "EuclideanDistance", "safe"),
    ("sklearn.neighbors.kd_tree", "BinaryTree", "safe"),
    ("sklearn.tree._tree", "ClassificationCriterion", "safe"),
    ("sklearn.cluster.k_means_", "KMeans", "safe"),
    ("numpy.random", "__RandomState_ctor", "safe"),
    ("scipy.sparse.csr", "csr_matrix", "safe"),
    ("sklearn.grid_search", "GridSearchCV", "safe"),
    ("sklearn.lda", "LDA", "safe"),
    ("sklearn.preprocessing.imputation", "Imputer", "suspicious"),  # removed: loads only through a migration
    ("sklearn.ensemble.gradient_boosting", "LogOddsEstimator", "suspicious"),
    ("sklearn.metrics.scorer", "_PredictScorer", "suspicious"),
    # an old path does not bless what it leads to: gadgets stay gadgets
    ("sklearn.utils.testing", "assert_run_python_script", "unsafe"),
    ("sklearn.externals.joblib", "load", "unsafe"),
    ("sklearn.externals.joblib.parallel", "Parallel", "unsafe"),
])
def test_rule(module, name, verdict):
    assert classify_global(module, name) == verdict
    assert is_allowed(module, name) == (verdict == "safe")  # the restricted unpickler resolves exactly the safe ones


def test_safe_means_allowed_for_every_allowlisted_and_every_old_name():
    """The restricted unpickler never resolves a name the verdict does not call safe, and resolves every safe one."""
    table = rules()
    legacy = json.loads(LEGACY_PATH.read_text())
    names = set(table.safe)
    names |= {tuple(r["old"].split(":")) for r in legacy["classes"]}
    names |= {tuple(r["name"].split(":")) for r in legacy["removed"]}
    names |= {(r["old"], "SomeClass") for r in legacy["modules"]}
    for module, name in sorted(names):
        assert is_allowed(module, name) == (classify_global(module, name) == "safe"), (module, name)


def test_the_history_table_leads_somewhere():
    """Every moved name leads to a name that exists here or is allowlisted; every removed name is gone
    (fixtures/make_allowlist.py runs the same check when it regenerates the allowlist)."""
    spec = importlib.util.spec_from_file_location("make_allowlist", ROOT / "fixtures" / "make_allowlist.py")
    make_allowlist = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_allowlist)
    safe = json.loads((ROOT / "convert" / "scan" / "pickle_allowlist.json").read_text())["safe"]
    assert make_allowlist.check_legacy_names(safe) == []


def test_help_text_states_the_rule(capsys):
    from compat.cli import main

    with pytest.raises(SystemExit) as done:
        main(["inspect", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for part in ("Python standard library", "torch, tensorflow, keras, tf_keras, numpy, scipy, sklearn or joblib",
                 "network/process client", "project that saved the file", "never safe"):
        assert part in text
    assert " ".join(RULE.split()) in text


# ------------------------------------------------------------------------ real legacy files (scan only)


def _corpus() -> list:
    if not (CORPUS / "MANIFEST.tsv").is_file():
        pytest.skip(f"the legacy corpus is not at {CORPUS} on this machine")
    with open(CORPUS / "MANIFEST.tsv", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def test_legacy_corpus_scans_safe_or_suspicious_for_a_reason(capsys):
    """Forty real legacy scikit-learn files (0.13 to 1.3, pickle and every joblib container): none is unsafe or
    unknown, and each old name is reported with where it lives today. Untrusted: only ever scanned."""
    from compat.cli import main

    rows = _corpus()
    assert len(rows) == 40
    verdicts = {}
    for row in rows:
        path = CORPUS / row["local_file"]
        artifact = convert.inspect(path)
        verdicts[row["local_file"]] = artifact.safety
        assert artifact.safety in ("safe", "suspicious"), (row["local_file"], [f.what for f in artifact.findings])
        if artifact.safety == "suspicious":
            assert all(f.what for f in artifact.findings if f.severity == "suspicious")
        assert main(["inspect", str(path)]) == 0
        old = [g for g in artifact.globals if legacy_name(g.module, g.name) is not None and g.verdict == "safe"
               and (g.module, g.name) not in rules().safe]
        for g in old:
            assert any(f.severity == "info" and g.qualname in f.what and "old name of" in f.what
                       for f in artifact.findings), g.qualname
    capsys.readouterr()
    assert sum(1 for v in verdicts.values() if v == "safe") >= 31  # every primary that names no removed class


def test_legacy_corpus_renames_agree_with_the_history_table():
    """The corpus manifest's own rename notes (written by its collector against scikit-learn 1.9.1, independently
    of this code) say where each old name lives today: the table must lead there (or on from there)."""
    pairs = []
    for row in _corpus():
        for part in row["rename_notes"].split("|"):
            part = part.strip()
            if part.startswith("renames:"):
                for pair in part[len("renames:"):].split(";"):
                    old, _, new = (x.strip() for x in pair.partition("->"))
                    pairs.append((old, new))
    assert len(pairs) >= 20
    for old, new in pairs:
        old_m, _, old_n = old.rpartition(".")
        new_m, _, new_n = new.rpartition(".")
        found = legacy_name(old_m, old_n)
        assert found is not None and not found.removed, old
        onward = legacy_name(new_m, new_n)
        expected = (onward.module, onward.name) if onward is not None and not onward.removed else (new_m, new_n)
        assert (found.module, found.name) == expected, (old, new, found)
