"""convert.adapters.diagnosis: why a file does not load here, in the words both ``convert`` and the audit use. The
error texts are the ones Python's unpickler raises (checked against real files in test_first_use and in
tests/compat/audits/test_legacy_artifacts.py)."""

from __future__ import annotations

import pickle

import pytest

from compat.audits.diagnose import classify
from convert.artifact import GlobalRef
from convert.adapters.diagnosis import import_failure
from convert.errors import CannotLoadError

SAVED = {"sklearn": "1.2.2"}


def _raised(payload: bytes) -> str:
    with pytest.raises(Exception) as err:
        pickle.loads(payload)
    return f"{type(err.value).__name__}: {err.value}"


def test_a_module_of_the_users_project_that_is_not_installed_is_named_with_its_class():
    text = _raised(b"cmytransform_not_here\nLogClip\n.")
    category, reason = import_failure(text, SAVED, [GlobalRef("mytransform_not_here", "LogClip", "suspicious")])
    assert category == "missing-class"
    assert reason.startswith("needs mytransform_not_here.LogClip, but no module mytransform_not_here is installed")
    assert "scikit-learn" not in reason


def test_a_scikit_learn_path_that_moved_is_version_drift_with_the_release_to_use():
    category, reason = import_failure("ModuleNotFoundError: No module named 'sklearn.ensemble._gb_losses'", SAVED)
    assert category == "version-drift"
    assert "saved with 1.2.2" in reason and "pip install scikit-learn==1.2.2" in reason


def test_a_class_the_users_module_no_longer_defines_is_a_missing_class():
    text = _raised(b"cpickle\nNoSuchClass\n.")  # a module that exists, without that attribute
    category, reason = import_failure(text)
    assert category == "missing-class" and reason.startswith("needs pickle.NoSuchClass, which the installed module")


def test_main_classes_and_crlf_names():
    assert import_failure("AttributeError: Can't get attribute 'Clip' on <module '__main__' (built-in)>")[0] == \
        "missing-class"
    assert import_failure("ModuleNotFoundError: No module named 'copy_reg\\r'")[0] == "corrupt"
    assert import_failure("ValueError: something else") is None


def test_the_audit_reports_what_the_adapter_diagnosed():
    exc = CannotLoadError("needs a.B, but no module a is installed here", category="missing-class", path="m.pkl")
    assert classify(exc) == ("failed", "missing-class", "needs a.B, but no module a is installed here")
