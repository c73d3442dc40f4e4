"""scikit-learn: joblib / pickle files -> ONNX through skl2onnx.

What this adds to a bare ``skl2onnx.to_onnx`` call:
- loading through the safety gate (static scan first, then an allowlist-restricted unpickler);
- the input signature read from the fitted model (``n_features_in_``, ``feature_names_in_``, one input
  per DataFrame column for a ``ColumnTransformer``, strings for text pipelines);
- plain tensor outputs with stable names (``label``, ``probabilities`` | ``scores``, ``prediction``,
  ``transformed``) and a native runner that returns the same names and shapes;
- conversions to try in order when a check fails (``remedies``): plain float32; ``exact-trees`` (tree
  ensembles with the model's own double thresholds, see ``_skl_trees``); ``double`` (float64 graph);
- workarounds for converter gaps that are cheap and correct (the StringNormalizer locale, a
  Unicode-aware tokenizer pattern), each named in the conversion notes.
scikit-learn and skl2onnx are imported inside functions: importing this module costs nothing.
"""

from __future__ import annotations

import re
import time
import warnings
from dataclasses import dataclass

import numpy as np

from ...artifact import Artifact
from .. import diagnosis
from ...errors import BadInputError, CannotLoadError, EnvironmentProblem, OutOfMemoryError, UnsupportedModelError
from ...spec import Domain, OutputSpec, Signature, TensorSpec
from . import causes, decisions, domains, fitted, functions, labels, noise, text, trees
from ..base import Converted, Hints, Loaded, Stopwatch, warm_modules

PLAIN, EXACT_TREES, DOUBLE = None, "exact-trees", "double"
DEFAULT_TOKEN_PATTERN = r"(?u)\b\w\w+\b"
# RE2 (onnxruntime's Tokenizer) reads \w and \b as ASCII: spell the default pattern with Unicode classes
UNICODE_TOKEN_EXP = r"[\pL\pN_][\pL\pN_]+"
# converters known to produce a model that runs but is wrong; never use them, whatever a check says
KNOWN_WRONG = {
    "HistGradientBoostingClassifier": "skl2onnx ignores categorical splits",
    "HistGradientBoostingRegressor": "skl2onnx ignores categorical splits",
}


def known_wrong(est) -> list[str]:
    """The estimators in ``est`` whose skl2onnx converter runs but computes something else, each with why."""
    found = []
    for inner in trees.iter_estimators(est):
        reason = KNOWN_WRONG.get(type(inner).__name__)
        categorical = getattr(inner, "is_categorical_", None)
        if reason and categorical is not None and np.any(categorical):
            found.append(f"{type(inner).__name__} with categorical features is wrong ({reason})")
    return found


@dataclass(frozen=True)
class _Output:
    spec: OutputSpec
    method: str  # the estimator method that computes it natively
    decision: decisions.Decision | None = None  # labels: what that method decides with


class SklearnAdapter:
    name = "sklearn"
    formats = ("pickle", "joblib")
    modules = {"load": ("sklearn", "joblib"), "convert": ("skl2onnx",), "check": ("onnxruntime",)}

    def warm(self, step: str) -> list[str]:
        return warm_modules(self.modules, step)

    def unpickle(self, artifact: Artifact, trust: bool = False):
        """The object a pickle or joblib file holds, whatever it is (a dict of settings, a model of a library no
        adapter converts): through the gate and the allowlist-restricted unpickler unless trusted."""
        from .unpickle import load_pickle

        return load_pickle(artifact, trust)

    def can_load(self, artifact: Artifact) -> bool:
        return artifact.framework == "sklearn"

    safe_formats = ("skops",)

    def save_safe(self, loaded: Loaded, path, to: str = "skops") -> dict:
        """Write the loaded (possibly migrated) model in a format that holds no code; what was written."""
        from .rescue import safe

        safe.save_skops(loaded.model, path)
        return {"format": "skops", "types": safe.trusted_types(path)}

    def reload_safe(self, loaded: Loaded, path, to: str = "skops") -> Loaded:
        """``loaded`` with its model read back from a file ``save_safe`` wrote (trusting only allowlisted types)."""
        from dataclasses import replace

        from .rescue import safe

        model = safe.load_skops(path)
        return replace(loaded, model=model, runner=_NativeRunner(model, loaded.signature, loaded.runner.outputs))

    def independent(self, loaded: Loaded):
        """(runner, how): the loaded model evaluated from its fitted arrays alone (``reference``), outputs named as
        ``loaded.run`` names them; None where no exact evaluation exists. The evidence that a migrated model
        computes what the release that saved it did, when that release no longer installs."""
        from .rescue import reference

        evaluation = reference.evaluator(loaded.model)
        runner = loaded.runner
        if evaluation is None or any(o.method not in evaluation.methods for o in runner.outputs):
            return None

        def run(feeds):
            x = runner.native_input(feeds)
            return {o.spec.name: np.asarray(evaluation(o.method, x)) for o in runner.outputs}

        return run, evaluation.how

    # -- load ---------------------------------------------------------------------------------
    def load(self, artifact: Artifact, hints: Hints) -> Loaded:
        t0 = time.perf_counter()
        _require_sklearn()
        notes: list[str] = []
        obj, migration = _unpickle(artifact, hints.trust, notes)
        if migration.migrated:
            notes.append(f"migrated ({len(migration)} change{'s' if len(migration) != 1 else ''}): "
                         + "; ".join(migration.lines()))
        elif migration:  # only parameters the file predates: its state is used as saved
            notes.append("loaded as saved; " + "; ".join(migration.lines()))
        est, where = _find_estimator(obj, artifact, hints.state_key)
        if where:
            notes.append(f"estimator found under {where}")
        outputs = _output_plan(est, artifact)
        signature = Signature(_input_specs(est, hints, artifact, notes), tuple(o.spec for o in outputs))
        runner = _NativeRunner(est, signature, outputs)
        facts = {"estimator": describe(est), "model": type(domains.steps_of(est)[-1]).__name__,
                 "saved_with": artifact.saved_with.get("sklearn"),
                 "migrated": migration.to_list() if migration.migrated else []}
        return Loaded(artifact, est, signature, runner, self.name, notes, facts, time.perf_counter() - t0,
                      probe=runner)

    # -- convert --------------------------------------------------------------------------------
    def remedies(self, loaded: Loaded) -> tuple[str | None, ...]:
        if known_wrong(loaded.model):  # plain would hand it to the converter known to be wrong
            return (EXACT_TREES, DOUBLE)
        if trees.contains_exact_trees(loaded.model):
            return (PLAIN, EXACT_TREES, DOUBLE)
        return (PLAIN, DOUBLE)

    # -- diagnose -------------------------------------------------------------------------------
    def stages(self, loaded: Loaded) -> list[tuple[str, Loaded]]:
        """Each proper prefix of a pipeline as a model of its own (output ``transformed``), in order: the
        check converts and compares them to find the first step whose output diverges."""
        est = loaded.model
        active = [(pos, name, step) for pos, (name, step) in enumerate(getattr(est, "steps", []))
                  if step not in (None, "passthrough")]
        outputs = (_Output(OutputSpec("transformed", "value"), "transform"),)
        signature = Signature(loaded.signature.inputs, tuple(o.spec for o in outputs))
        out = []
        for i, (pos, name, step) in enumerate(active[:-1]):
            prefix = est[: pos + 1]
            runner = _NativeRunner(prefix, signature, outputs)
            facts = {"estimator": describe(prefix), "model": type(step).__name__}
            label = f"step {i + 1} of {len(active)}: {name} ({describe(step)})"
            out.append((label, Loaded(loaded.artifact, prefix, signature, runner, self.name, [], facts, 0.0,
                                      probe=runner)))
        return out

    def known_causes(self, loaded: Loaded, symptoms: set[str]) -> list[tuple[str, str]]:
        return causes.known_causes(loaded.model, symptoms)

    def to_onnx(self, loaded: Loaded, opset: int | None = None, remedy: str | None = None) -> Converted:
        if remedy not in (PLAIN, EXACT_TREES, DOUBLE):
            raise ValueError(f"unknown remedy {remedy!r}")
        steps: dict[str, float] = {}
        watch = Stopwatch(steps)
        notes: list[str] = []
        est = loaded.model
        wrong = known_wrong(est)
        if remedy is PLAIN and wrong:
            raise UnsupportedModelError(f"plain conversion of {wrong[0]}", path=loaded.artifact.path,
                                        hint="the exact-trees conversion handles it")
        with watch("convert"):
            model = _skl2onnx_convert(loaded, opset, remedy, notes)
            model = _label_from_raw_scores(loaded, model, opset, remedy, notes)
        with watch("finish"):
            model = _finish(loaded, model, notes)
        return Converted(model, remedy, notes, steps)


ADAPTER = SklearnAdapter()


# ---------------------------------------------------------------------------------------------
# loading


def _require_sklearn():
    try:
        import sklearn  # noqa: F401
    except ImportError as exc:
        raise EnvironmentProblem(f"scikit-learn is not installed ({exc})",
                                 hint="pip install 'modelport[sklearn]'") from None


def _unpickle(artifact: Artifact, trust: bool, notes: list[str]):
    """(object, Migration): a file another release saved (or one a text-mode copy damaged) goes through the
    migrating loader, which brings old names and state forward and lists what it changed; a file this release
    saved loads as it is."""
    import sklearn

    from . import unpickle  # imported before the try: an ImportError below is the pickle's, not ours
    from .rescue.changes import Migration

    installed = sklearn.__version__
    saved = artifact.saved_with.get("sklearn")
    migrating = saved != installed or unpickle.restorable(artifact)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if migrating:
                obj, migration = unpickle.load_migrating(artifact, trust)
            else:
                obj, migration = unpickle.load_pickle(artifact, trust), Migration()
        except (ModuleNotFoundError, ImportError, AttributeError) as exc:
            raise _import_error(artifact, exc) from None
        except ValueError as exc:
            if "node array from the pickle has an incompatible dtype" not in str(exc):
                raise BadInputError(f"corrupt or unreadable pickle: {_first_line(exc)}", path=artifact.path,
                                    hint="restore it from the original source") from None
            raise CannotLoadError(diagnosis.old_tree_layout_reason(artifact.saved_with), category="version-drift",
                                  path=artifact.path) from None
        except MemoryError as exc:  # the gate refused damaged streams already: an allocation failed
            raise OutOfMemoryError(f"ran out of memory while loading it: {_first_line(exc)}", path=artifact.path,
                                   hint="nothing was converted; run it where more memory is free") from None
        except (EOFError, TypeError, KeyError, IndexError, OverflowError) as exc:
            raise BadInputError(f"corrupt or unreadable pickle: {_first_line(exc)}", path=artifact.path,
                                hint="restore it from the original source") from None
        except Exception as exc:  # pickle.UnpicklingError and friends from arbitrary reducers
            if type(exc).__name__ in ("UnpicklingError",):
                raise BadInputError(f"corrupt pickle: {_first_line(exc)}", path=artifact.path,
                                    hint="restore it from the original source") from None
            raise
    if saved and saved != installed:
        notes.append(f"saved with scikit-learn {saved}, loaded with {installed}: scikit-learn does not promise "
                     "this works; the check is what tells")
    elif any(type(w.message).__name__ == "InconsistentVersionWarning" for w in caught):
        notes.append("scikit-learn warned that the pickle comes from another version")
    return obj, migration


def _import_error(artifact: Artifact, exc: BaseException) -> BadInputError:
    """A module or class the pickle names is not importable here: the one diagnosis the audit gives too
    (a renamed scikit-learn path, a class of the user's own module that is not installed, a CRLF-mangled
    name), never "install the release that is installed already"."""
    text = f"{type(exc).__name__}: {exc}"
    found = diagnosis.import_failure(text, artifact.saved_with, artifact.globals)
    if found:
        return CannotLoadError(found[1], category=found[0], path=artifact.path)
    return BadInputError(f"unpickling fails: {_first_line(exc)}", path=artifact.path,
                         hint="load it where the modules it names are installed")


def _is_estimator(obj) -> bool:
    return hasattr(obj, "get_params") and hasattr(obj, "fit")


def estimators_in(obj) -> list[tuple]:
    """(key, estimator) for each estimator a dict/list/tuple holds at its top level (dict keys, list indices)."""
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    return [(k, v) for k, v in items if _is_estimator(v)]


def _find_estimator(obj, artifact: Artifact, key: str | None = None):
    """The estimator in the file: the object itself, or the one estimator inside a dict/list/tuple (``key``, the
    ``--state-key`` hint, picks one of several by its dict key or list index)."""
    if _is_estimator(obj):
        return obj, None
    found = estimators_in(obj)
    if key is not None and found:
        chosen = [(k, v) for k, v in found if str(k) == str(key)]
        if not chosen:
            raise BadInputError(f"holds no estimator under {key!r} (it has {', '.join(repr(k) for k, _ in found)})",
                                path=artifact.path, hint="pick one of those with --state-key")
        found = chosen
    if len(found) == 1:
        key, est = found[0]
        return est, f"key {key!r}" if isinstance(obj, dict) else f"item {key}"
    what = type(obj).__name__
    if found:
        keys = ", ".join(repr(k) for k, _ in found)
        raise BadInputError(f"holds several estimators ({keys}); modelport converts one model per file",
                            path=artifact.path, hint=f"pick one with --state-key {found[0][0]}, or save the one to "
                            "convert on its own")
    raise UnsupportedModelError(f"holds a {what}, not a scikit-learn estimator", path=artifact.path)


# ---------------------------------------------------------------------------------------------
# signature


def describe(est) -> str:
    """``Pipeline(StandardScaler -> LogisticRegression)`` style names for messages and reports."""
    name = type(est).__name__
    if hasattr(est, "steps"):
        inner = " -> ".join(describe(s) for _, s in est.steps if s not in (None, "passthrough"))
        return f"{name}({inner})"
    if hasattr(est, "transformers") and hasattr(est, "_columns"):
        return f"{name}({', '.join(describe(t) for _, t, _ in est.transformers if not isinstance(t, str))})"
    return name


def _kind(est) -> str:
    from sklearn.base import is_classifier, is_outlier_detector, is_regressor

    for kind, test in (("classifier", is_classifier), ("regressor", is_regressor),
                       ("outlier_detector", is_outlier_detector)):
        try:
            if test(est):
                return kind
        except (AttributeError, TypeError):  # internal holders without estimator tags
            return "other"
    if getattr(est, "_estimator_type", None) == "clusterer" or type(domains.steps_of(est)[-1]).__name__ in _CLUSTERERS:
        return "clusterer"
    return "transformer" if hasattr(est, "transform") else "other"


_CLUSTERERS = ("KMeans", "MiniBatchKMeans", "BisectingKMeans", "GaussianMixture", "BayesianGaussianMixture", "Birch")


def _output_plan(est, artifact: Artifact) -> tuple[_Output, ...]:
    """Output names, in the order skl2onnx emits them, and the native method behind each."""
    kind = _kind(est)
    has = lambda m: hasattr(est, m)  # noqa: E731  (respects available_if)
    classes = getattr(est, "classes_", None)
    classes = tuple(np.asarray(classes).tolist()) if classes is not None and np.ndim(classes) == 1 else None
    decision = decisions.decision_of(est) if kind in ("classifier", "clusterer", "outlier_detector") else None
    decided_by = decision.name if decision else None
    if decision and classes is None:
        classes = decision.classes
    label = lambda scores_from=None: _Output(OutputSpec(  # noqa: E731
        "label", "label", scores_from=scores_from, classes=classes, decided_by=decided_by), "predict", decision)
    if kind == "classifier":
        second = ("probabilities", "predict_proba") if has("predict_proba") else ("scores", "decision_function")
        if not has(second[1]):
            return (label(),)
        return (label(second[0]), _Output(OutputSpec(second[0], second[0]), second[1]))
    if kind == "regressor":
        return (_Output(OutputSpec("prediction", "value"), "predict"),)
    if kind == "outlier_detector" and has("predict") and has("decision_function"):
        return (label(), _Output(OutputSpec("scores", "scores"), "decision_function"))
    if kind == "clusterer" and has("predict"):
        if has("predict_proba"):
            return (label("probabilities"), _Output(OutputSpec("probabilities", "probabilities"), "predict_proba"))
        if has("transform"):
            return (label(), _Output(OutputSpec("scores", "scores"), "transform"))
        return (label(),)
    if has("transform"):
        return (_Output(OutputSpec("transformed", "value"), "transform"),)
    raise UnsupportedModelError(f"{describe(est)} has no predict or transform to convert", path=artifact.path,
                                hint="modelport converts models that map inputs to outputs")


def _onnx_name(column: str, taken: set[str]) -> str:
    """A graph-safe input name for a DataFrame column (skl2onnx would rename it otherwise)."""
    name = re.sub(r"\W", "_", str(column)) or "column"
    if name[0].isdigit():
        name = "c_" + name
    base, i = name, 1
    while name in taken or name in ("label", "probabilities", "scores", "prediction", "transformed"):
        i += 1
        name = f"{base}_{i}"
    taken.add(name)
    return name


def _input_specs(est, hints: Hints, artifact: Artifact, notes: list[str]) -> tuple[TensorSpec, ...]:
    steps = domains.steps_of(est)
    front = steps[0]
    front_name = type(front).__name__
    if hints.inputs:
        return tuple(hints.inputs)
    if front_name in domains.TEXT_VECTORIZERS:
        return (TensorSpec("text", "string", ("batch", 1), (domains.text_domain(front),)),)
    names = getattr(est, "feature_names_in_", None)
    if names is None:
        names = getattr(front, "feature_names_in_", None)
    if hasattr(front, "transformers_") and names is not None:
        return _column_inputs(est, front, list(names))
    categories = domains.hgb_categories(est)
    if categories and (names is not None or any(v.dtype == object for v in categories.values())):
        return _hgb_column_inputs(est, names, categories)
    n = getattr(est, "n_features_in_", None) or getattr(front, "n_features_in_", None)
    if n is None:
        n, source = fitted.input_width(front)
        if n is not None:
            notes.append(f"input width {n} read from {type(front).__name__}.{source} (the file predates "
                         "n_features_in_)")
    if n is None:
        raise BadInputError(f"{describe(est)} does not say how many features it takes", path=artifact.path,
                            hint="give the input shape, e.g. --input X=batchx20")
    columns = tuple(str(c) for c in names) if names is not None else None
    return (TensorSpec("X", "float32", ("batch", int(n)), domains.numeric_domains(est, int(n)), columns),)


def _column_inputs(est, ct, names: list[str]) -> tuple[TensorSpec, ...]:
    """One [batch, 1] input per DataFrame column the ColumnTransformer was fitted on."""
    consumer: dict[int, tuple] = {}
    mapping = getattr(ct, "_transformer_to_input_indices", None) or {}
    for name, trans, columns in ct.transformers_:
        indices = mapping.get(name)
        if indices is None:
            indices = _resolve_columns(columns, names)
        for pos, idx in enumerate(indices):
            consumer.setdefault(int(idx), (trans, pos, isinstance(columns, str)))
    taken: set[str] = set()
    specs = []
    thresholds = domains.column_thresholds(est, names)
    for idx, column in enumerate(names):
        trans, pos, scalar = consumer.get(idx, (None, 0, False))
        dtype, domain = domains.column_domain(trans, pos)
        if idx in thresholds and dtype.startswith("float"):
            domain = Domain(**(vars(domain) | {"thresholds": thresholds[idx]}))
        shape = ("batch", 1)
        specs.append(TensorSpec(_onnx_name(column, taken), dtype, shape, (domain,), (str(column),)))
    return tuple(specs)


def _hgb_column_inputs(est, names, categories: dict) -> tuple[TensorSpec, ...]:
    """One [batch, 1] input per column of a HistGradientBoosting model with categorical features, as it
    reads a DataFrame: a categorical column as its encoder matches it (strings as strings, numbers as exact
    float64 values, NaN for missing), the others float32. Columns without names are called x0, x1..."""
    n = int(domains.steps_of(est)[-1].n_features_in_)
    numeric = domains.numeric_domains(est, n)
    names = [str(c) for c in names] if names is not None else [f"x{j}" for j in range(n)]
    taken: set[str] = set()
    specs = []
    for j, column in enumerate(names):
        dtype, domain = domains.category_domain(categories[j]) if j in categories else ("float32", numeric[j])
        specs.append(TensorSpec(_onnx_name(column, taken), dtype, ("batch", 1), (domain,), (column,)))
    return tuple(specs)


def _resolve_columns(columns, names):
    if isinstance(columns, str):
        return [names.index(columns)]
    if isinstance(columns, slice):
        return list(range(len(names)))[columns]
    cols = list(np.atleast_1d(columns)) if not callable(columns) else []
    if cols and isinstance(cols[0], (bool, np.bool_)):
        return [i for i, keep in enumerate(cols) if keep]
    return [names.index(c) if isinstance(c, str) else int(c) for c in cols]


# ---------------------------------------------------------------------------------------------
# native runner


class _NativeRunner:
    """Feeds named like the ONNX inputs -> the estimator's own methods -> outputs named like ONNX. Also the
    check's ``NativeProbe``: what each label is decided with, and copies with perturbed parameters."""

    def __init__(self, est, signature: Signature, outputs: tuple[_Output, ...]):
        self.est = est
        self.signature = signature
        self.outputs = outputs
        self.binary_scores = False  # set by _finish when ONNX scores were reduced to the positive column

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self(feeds)

    def deciding(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = self.native_input(feeds)
        out = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for o in self.outputs:
                if o.decision is not None and o.decision.compute is not None:
                    out[o.spec.name] = np.asarray(o.decision.compute(self.est, x), dtype=np.float64)
        return out

    def perturbed(self, eps: float, draw: int) -> _NativeRunner:
        return _NativeRunner(noise.perturbed_copy(self.est, eps, draw), self.signature, self.outputs)

    def native_input(self, feeds: dict[str, np.ndarray]):
        specs = self.signature.inputs
        if len(specs) == 1 and specs[0].dtype == "string" and specs[0].name == "text":
            return [str(s) for s in np.asarray(feeds["text"]).reshape(-1)]
        if len(specs) == 1 and specs[0].dtype != "string" and not _is_column(specs[0]):
            x = np.asarray(feeds[specs[0].name])
            x = x.astype(np.float64) if x.dtype.kind == "f" else x
            if specs[0].column_names:
                import pandas as pd

                return pd.DataFrame(x, columns=list(specs[0].column_names))
            return x
        import pandas as pd

        data = {}
        for spec in specs:
            col = np.asarray(feeds[spec.name]).reshape(-1)
            if spec.dtype == "string":
                col = col.astype(object)
            elif col.dtype.kind == "f":
                col = col.astype(np.float64)
            data[spec.column_names[0] if spec.column_names else spec.name] = col
        return pd.DataFrame(data)

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = self.native_input(feeds)
        out = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for o in self.outputs:
                value = getattr(self.est, o.method)(x)
                if hasattr(value, "toarray"):  # sparse transform output
                    value = value.toarray()
                out[o.spec.name] = np.asarray(value)
        return out


def _is_column(spec: TensorSpec) -> bool:
    return spec.shape[-1:] == (1,) and bool(spec.column_names) and len(spec.column_names) == 1 and spec.name != "X"


# ---------------------------------------------------------------------------------------------
# conversion


def default_opset() -> int:
    import onnx
    import skl2onnx

    return min(skl2onnx.get_latest_tested_opset_version(), onnx.defs.onnx_opset_version())


def _initial_types(signature: Signature, double: bool):
    from skl2onnx.common.data_types import (BooleanTensorType, DoubleTensorType, FloatTensorType,
                                            Int32TensorType, Int64TensorType, StringTensorType)

    table = {"float32": DoubleTensorType if double else FloatTensorType, "float64": DoubleTensorType,
             "int64": Int64TensorType, "int32": Int32TensorType, "string": StringTensorType, "bool": BooleanTensorType}
    types = []
    for spec in signature.inputs:
        if spec.dtype not in table:
            raise UnsupportedModelError(f"input {spec.name} of dtype {spec.dtype} is not supported by skl2onnx")
        shape = [None if not isinstance(d, int) else d for d in spec.shape]
        # skl2onnx matches ColumnTransformer columns by these names; _finish renames the graph inputs back
        name = spec.column_names[0] if _is_column(spec) else spec.name
        types.append((name, table[spec.dtype](shape)))
    return types


def _allowed_options(est) -> dict:
    """The options skl2onnx's converter for ``est`` accepts (empty when unknown)."""
    try:
        from skl2onnx._supported_operators import sklearn_operator_name_map
        from skl2onnx.common._registration import get_converter

        return get_converter(sklearn_operator_name_map[type(est)]).get_allowed_options() or {}
    except Exception:  # not registered, or skl2onnx internals moved: no options
        return {}


def _options(est, notes: list[str]) -> dict:
    """Per-estimator skl2onnx options: plain tensors instead of ZipMap for every classifier that has the
    option (and an explicit empty entry for those that do not, since skl2onnx's pipeline parser would
    otherwise push ``zipmap`` onto them and fail), and a Unicode-aware tokenizer for text vectorizers."""
    options: dict = {}
    for inner in trees.iter_estimators(est):
        name = type(inner).__name__
        if hasattr(inner, "steps"):
            continue  # a pipeline passes its own options down to its last step: set them there instead
        allowed = _allowed_options(inner)
        if "zipmap" in allowed:
            options[id(inner)] = {**options.get(id(inner), {}), "zipmap": False}
        elif _kind(inner) in ("classifier", "clusterer"):
            options.setdefault(id(inner), {})
        if name == "CalibratedClassifierCV":
            _calibrate_raw_scores(inner, options, notes)
        if name in ("CountVectorizer", "TfidfVectorizer") and getattr(inner, "token_pattern", None) == DEFAULT_TOKEN_PATTERN \
                and getattr(inner, "analyzer", "word") == "word" and getattr(inner, "tokenizer", None) is None:
            options[id(inner)] = {"tokenexp": UNICODE_TOKEN_EXP}
            notes.append(f"{name}: tokenizer pattern spelled with Unicode classes (onnxruntime's regex reads \\w as ASCII)")
    return options


def _label_from_raw_scores(loaded: Loaded, model, opset, remedy, notes: list[str]):
    """Where skl2onnx derives the label from probabilities but scikit-learn decides with decision_function,
    take the label from a second conversion with raw scores (see ``labels``)."""
    final = domains.steps_of(loaded.model)[-1]
    spec = next((o for o in loaded.signature.outputs if o.kind == "label"), None)
    why = labels.needs_raw_scores(final, spec.decided_by if spec else None)
    if why is None or "raw_scores" not in _allowed_options(final):
        return model
    raw = _skl2onnx_convert(loaded, opset, remedy, [], {id(final): {"raw_scores": True}})
    merged = labels.take_label(model, raw)
    if merged is None:
        return model
    notes.append(f"{type(final).__name__}: label computed from the raw scores ({why})")
    return merged


def _calibrate_raw_scores(calibrated, options: dict, notes: list[str]) -> None:
    """scikit-learn calibrates a base pipeline's decision_function; skl2onnx asks only the base estimator
    itself for raw scores, so a pipeline's probabilities get calibrated instead (every probability wrong).
    Ask the pipeline's final step for its raw scores, as skl2onnx does for a bare estimator."""
    fixed = 0
    for member in getattr(calibrated, "calibrated_classifiers_", ()):
        base = getattr(member, "estimator", None)
        if not hasattr(base, "steps") or not hasattr(base, "decision_function"):
            continue
        final = base.steps[-1][1]
        if "raw_scores" in _allowed_options(final):
            options[id(final)] = {**options.get(id(final), {}), "raw_scores": True}
            fixed += 1
    if fixed:
        notes.append("CalibratedClassifierCV over a pipeline: the pipeline's raw scores are calibrated, as "
                     "scikit-learn does (skl2onnx would calibrate its probabilities)")


def _skl2onnx_convert(loaded: Loaded, opset: int | None, remedy: str | None, notes: list[str],
                      extra_options: dict | None = None):
    try:
        from skl2onnx import convert_sklearn
    except ImportError as exc:
        raise EnvironmentProblem(f"skl2onnx cannot be imported ({_first_line(exc)})",
                                 hint="pip install 'modelport[sklearn]'") from None
    est = loaded.model
    opset = opset or default_opset()
    custom = {}
    if remedy in (EXACT_TREES, DOUBLE):
        custom = _exact_tree_converters(est, notes, loaded.artifact.path)
        if remedy == EXACT_TREES and not custom:
            raise UnsupportedModelError("no tree ensemble here can be written exactly", path=loaded.artifact.path)
    shapes = {}
    front = type(domains.steps_of(est)[0])
    if len(loaded.signature.inputs) > 1 and custom.get(front) is trees.convert_exact_tree:
        shapes[front] = trees.shape_exact_tree  # it reads one input per column, strings included
    for inner in trees.iter_estimators(est):
        if functions.supported(inner):
            custom[type(inner)] = functions.convert
            shapes[type(inner)] = functions.shape
            notes.append(f"FunctionTransformer({inner.func.__name__}) written as ONNX ops")
        if text.supported(inner):
            custom[type(inner)] = text.convert
            notes.append(f"{type(inner).__name__}(sublinear_tf=True): 1 + log(tf) for non-zero counts, as scikit-learn "
                         "computes it (skl2onnx writes log(1 + tf))")
    options = _options(est, notes)
    for key, extra in (extra_options or {}).items():
        options[key] = {**options.get(key, {}), **extra}
    initial_types = _initial_types(loaded.signature, double=remedy == DOUBLE)
    target = {"": opset, "ai.onnx.ml": trees.DECLARED_ML_VERSION}
    try:
        with warnings.catch_warnings(), _conversion_view(est, notes):
            warnings.simplefilter("ignore")
            model = convert_sklearn(est, initial_types=initial_types, target_opset=target, options=options or None,
                                    custom_conversion_functions=custom or None,
                                    custom_shape_calculators=shapes or None)
    except Exception as exc:
        raise _conversion_error(loaded, exc) from None
    if any(fn is trees.convert_exact_tree for fn in custom.values()):
        _raise_ml_opset(model, loaded)
    return model


# Parameters that only change ``transform`` on a predictor, yet make skl2onnx refuse the whole model.
# The ONNX graph computes predict/predict_proba, which they do not touch, so they are neutralised while
# converting (and restored afterwards).
TRANSFORM_ONLY = {"VotingClassifier": ("flatten_transform", False)}


class _conversion_view:
    def __init__(self, est, notes: list[str]):
        self.changes = []
        for inner in trees.iter_estimators(est):
            rule = TRANSFORM_ONLY.get(type(inner).__name__)
            if rule and getattr(inner, rule[0], rule[1]) != rule[1]:
                self.changes.append((inner, rule[0], getattr(inner, rule[0])))
                notes.append(f"{type(inner).__name__}: {rule[0]}={rule[1]} while converting "
                             "(it only affects transform, which the ONNX graph does not compute)")

    def __enter__(self):
        for inner, attr, _ in self.changes:
            setattr(inner, attr, TRANSFORM_ONLY[type(inner).__name__][1])

    def __exit__(self, *exc):
        for inner, attr, value in self.changes:
            setattr(inner, attr, value)


def _exact_tree_converters(est, notes: list[str], path) -> dict:
    """Classes whose every instance in ``est`` can be written as an exact TreeEnsemble."""
    by_class: dict[type, list] = {}
    members = set()
    for inner in trees.iter_estimators(est):
        if type(inner).__name__ in trees.EXACT_TREE_MODELS and getattr(inner, "estimators_", None) is not None:
            members.update(id(m) for m in np.ravel(np.asarray(inner.estimators_, dtype=object)))
    for inner in trees.iter_estimators(est):
        if id(inner) in members:
            continue  # a tree inside an ensemble converted as a whole
        if type(inner).__name__ in trees.EXACT_TREE_MODELS and trees.is_fitted_tree_model(inner):
            by_class.setdefault(type(inner), []).append(inner)
    custom = {}
    for cls, instances in by_class.items():
        try:
            for inner in instances:
                trees.forest_for(inner)
        except trees.NotExact as exc:
            wrong = [why for inner in instances for why in known_wrong(inner)]
            if wrong:  # skl2onnx's converter would run and be wrong: refuse instead
                raise UnsupportedModelError(f"{cls.__name__} cannot be written exactly ({exc}), and plain conversion "
                                            f"of {wrong[0]}", path=path, hint="nothing was written") from None
            notes.append(f"{cls.__name__}: kept skl2onnx's converter ({exc})")
            continue
        custom[cls] = trees.convert_exact_tree
        notes.append(f"{cls.__name__}: exact TreeEnsemble (ai.onnx.ml opset 5, double thresholds)")
    return custom


_DEPRECATED_ML = {"TreeEnsembleClassifier", "TreeEnsembleRegressor"}


def _raise_ml_opset(model, loaded: Loaded):
    """Declare ai.onnx.ml opset 5 (TreeEnsemble) once no op remains that opset 5 deprecates."""
    used = {n.op_type for n in _all_nodes(model.graph) if n.domain == trees.ML_DOMAIN}
    if used & _DEPRECATED_ML:
        raise UnsupportedModelError(
            "exact trees cannot share a graph with skl2onnx's TreeEnsembleClassifier/Regressor "
            f"({', '.join(sorted(used & _DEPRECATED_ML))})", path=loaded.artifact.path)
    for imp in model.opset_import:
        if imp.domain == trees.ML_DOMAIN:
            imp.version = 5


def _all_nodes(graph):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.g and attr.g.node:
                yield from _all_nodes(attr.g)
            for g in attr.graphs:
                yield from _all_nodes(g)


def _conversion_error(loaded: Loaded, exc) -> UnsupportedModelError:
    text = str(exc)
    missing = re.search(r"Unable to find a (?:shape calculator|converter) for (?:type|model type)\s*'?<class '([\w.]+)'>", text)
    what = describe(loaded.model)
    if missing:
        cls = missing.group(1).rsplit(".", 1)[-1]
        return UnsupportedModelError(f"skl2onnx has no converter for {cls} (in {what})", path=loaded.artifact.path,
                                     hint="nothing was written")
    return UnsupportedModelError(f"skl2onnx could not convert {what}: {type(exc).__name__}: {_first_line(exc)}",
                                 path=loaded.artifact.path, hint="nothing was written")


def _first_line(exc) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 240 else line[:237] + "..."


# ---------------------------------------------------------------------------------------------
# finishing: names, shapes, runtime workarounds


def _finish(loaded: Loaded, model, notes: list[str]):
    from ... import onnxfile

    outputs = loaded.signature.outputs
    graph_outputs = list(model.graph.output)
    if len(graph_outputs) < len(outputs):
        raise UnsupportedModelError(
            f"skl2onnx produced {len(graph_outputs)} output(s) for {describe(loaded.model)}, expected "
            f"{len(outputs)} ({', '.join(o.name for o in outputs)})", path=loaded.artifact.path)
    for extra in graph_outputs[len(outputs):]:
        model.graph.output.remove(extra)
    for graph_input, spec in zip(list(model.graph.input), loaded.signature.inputs):
        if graph_input.name != spec.name:
            _rename_value(model.graph, graph_input.name, spec.name)
    for out, spec in zip(list(model.graph.output), outputs):
        if out.name != spec.name:
            _rename_value(model.graph, out.name, spec.name)
    model = onnxfile.finalize(model)
    session = _session(model, loaded, notes)
    model = _align_shapes(loaded, model, session, notes)
    return onnxfile.finalize(model)


def _rename_value(graph, old: str, new: str):
    for node in graph.node:
        node.output[:] = [new if n == old else n for n in node.output]
        node.input[:] = [new if n == old else n for n in node.input]
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        if vi.name == old:
            vi.name = new


def _session(model, loaded: Loaded, notes: list[str]):
    """An onnxruntime session for ``model``, applying the locale workaround when it is what stops it."""
    import onnxruntime as ort
    from onnx import helper

    def create():
        opts = ort.SessionOptions()
        opts.log_severity_level = 4
        return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])

    try:
        return create()
    except Exception as exc:
        if "locale" not in str(exc):
            raise UnsupportedModelError(f"onnxruntime cannot run the converted graph: {_first_line(exc)}",
                                        path=loaded.artifact.path, hint="nothing was written") from None
    for node in _all_nodes(model.graph):
        if node.op_type == "StringNormalizer":
            for attr in [a for a in node.attribute if a.name == "locale"]:
                node.attribute.remove(attr)
            node.attribute.append(helper.make_attribute("locale", "C.UTF-8"))
    notes.append("StringNormalizer locale set to C.UTF-8 (en_US.UTF-8 is not installed here)")
    try:
        return create()
    except Exception as exc:
        raise UnsupportedModelError(f"onnxruntime cannot run the converted graph: {_first_line(exc)}",
                                    path=loaded.artifact.path, hint="nothing was written") from None


def probe_feeds(signature: Signature, rows: int = 3) -> dict[str, np.ndarray]:
    """A few valid rows built from the domains alone (used to learn output shapes)."""
    feeds = {}
    for spec in signature.inputs:
        cols = spec.shape[-1] if isinstance(spec.shape[-1], int) else 1
        doms = list(spec.domains) or [Domain()]
        values = []
        for j in range(cols):
            d = doms[j] if j < len(doms) else doms[-1]
            if d.categories:
                v = d.categories[0]
            elif d.vocabulary:
                v = " ".join(d.vocabulary[:3])
            elif spec.dtype == "string":
                v = "a"
            else:
                v = d.mean if d.mean is not None else (d.low if d.low is not None else 0.0)
            values.append(v)
        arr = np.array([values] * rows, dtype=object if spec.dtype == "string" else spec.dtype)
        feeds[spec.name] = arr
    return feeds


def _align_shapes(loaded: Loaded, model, session, notes: list[str]):
    """Make each ONNX output the rank scikit-learn returns: ``[N, 1]`` -> ``[N]``; a binary classifier's
    two score columns ``[-d, d]`` -> ``d`` (what ``decision_function`` returns)."""

    feeds = probe_feeds(loaded.signature)
    feeds = {i.name: _as_input(feeds[i.name], i.type) for i in session.get_inputs()}
    try:
        native = loaded.run(probe_feeds(loaded.signature))
    except Exception:
        return model  # the check will report what the native model does with real rows
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    graph = model.graph
    for out in list(graph.output):
        name = out.name
        n, o = native.get(name), got.get(name)
        if n is None or o is None or n.ndim == o.ndim:
            continue
        if n.ndim == 1 and o.ndim == 2 and o.shape[1] == 2 and o.shape[0] == n.shape[0]:
            # binary scores as two columns (-d, d) or (d, -d): keep the column that is decision_function
            errors = [float(np.abs(o[:, c].astype(np.float64) - n.astype(np.float64)).max()) for c in range(2)]
            column = int(np.argmin(errors)) if errors[0] != errors[1] else 1
            _reroute_output(graph, out, "Gather", [column], axis=1)
            notes.append(f"{name}: kept the score column of the positive class, as decision_function returns")
        elif o.size == n.size:  # [N, 1] (or a converter's [1, N]) where scikit-learn returns [N]
            _reroute_output(graph, out, "Reshape", [-1] + list(n.shape[1:]))
    return model


def _reroute_output(graph, out, op: str, values: list[int], **attrs):
    """Make graph output ``out`` the result of ``op(previous value, values)`` (Gather or Reshape)."""
    from onnx import TensorProto, helper

    name = out.name
    raw = name + "_raw"
    _rename_value(graph, name, raw)
    out.name = name  # the graph output keeps its name; the new node produces it
    const = f"{name}_{op.lower()}_arg"
    dims = [] if op == "Gather" else [len(values)]
    graph.initializer.append(helper.make_tensor(const, TensorProto.INT64, dims, values))
    graph.node.append(helper.make_node(op, [raw, const], [name], name=f"{name}_{op.lower()}", **attrs))
    shape = out.type.tensor_type.shape
    keep = 1 + (len(values) - 1 if op == "Reshape" else 0)
    del shape.dim[keep:]
    if op == "Reshape":
        shape.dim[0].dim_param = "N"


def _as_input(arr: np.ndarray, onnx_type: str) -> np.ndarray:
    table = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
             "tensor(int32)": np.int32, "tensor(bool)": np.bool_}
    if onnx_type == "tensor(string)":
        return np.asarray(arr).astype(str).astype(object)
    return np.asarray(arr).astype(table.get(onnx_type, np.float32))
