"""The tolerance policy and per-output statistics, accumulated batch by batch.

- integer, string and bool outputs must be equal;
- floats pass when ``|onnx - native| <= atol + rtol * |native|`` (the native model is the reference),
  with defaults tied to the less precise of the two dtypes, overridable per output (``--tol``);
- where the default fails and the native side can measure it (``Noise``), an element may instead sit
  within its *noise floor*: ``NOISE_FACTOR`` times the largest change the native model's output shows
  when its float parameters are perturbed at the graph's precision (``NOISE_DRAWS`` seeded draws). The
  floor is a measured property of the model on that row, reported with the margin; an override is never
  widened by it;
- a label may differ only with evidence that the native model's own decision is tied within its noise:
  the quantity its ``predict`` compares (``decided_by``) separates the two labels by no more than
  ``NOISE_FACTOR`` times that quantity's change under perturbation, or a perturbed native model predicts
  the other label itself. Such rows are counted as *excused*, not hidden;
- NaN equals NaN; a NaN on one side only is a mismatch.
Statistics are exact whatever the batch size: every quantity is a sum, a count or a running maximum.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DEFAULT_TOLERANCES = {  # dtype -> (rtol, atol)
    "float16": (1e-2, 1e-3),
    "bfloat16": (2e-2, 1e-2),
    "float32": (1e-4, 1e-5),
    "float64": (1e-7, 1e-9),
}
ROW_PREVIEW = 16  # input values kept for the worst row
FAILED_ROWS_KEPT = 20  # row numbers kept per output, for the diagnosis
# The noise floor: perturbed native runs per row (draw 0 rounds the parameters to the graph's float type,
# draw 1 moves each by eps*|p|, later draws scale each by 1 + u*eps, u uniform in [-1, 1]: see
# convert/adapters/sklearn/noise.py) and the factor applied to the largest change they show. Measured on
# both zoos of tests/sklearn_zoo.py (rows that fail the float32 default, 1,000 synthesized + held out):
# where the float32 graph is honest, its error stayed below 4.5x the change of the same element
# (MultinomialNB 4.4x, LinearRegression on raw features 1.9x); where it is not (a tree or bin threshold
# rounded, a neighbour lost, a probability underflowed) the error is 1e5x and more. A planted error
# (one coefficient or threshold changed) lands far above the floor.
NOISE_DRAWS = 4
NOISE_FACTOR = 8.0
EPS = {"float32": float(np.finfo(np.float32).eps), "float64": float(np.finfo(np.float64).eps)}


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float

    def to_dict(self) -> dict:
        return {"rtol": self.rtol, "atol": self.atol}

    def allowed(self, native: np.ndarray) -> np.ndarray:
        """The error allowed for each element of ``native`` (float64)."""
        return self.atol + self.rtol * np.abs(np.nan_to_num(native))


def default_tolerance(native_dtype: np.dtype, onnx_dtype: np.dtype) -> Tolerance:
    names = [np.dtype(d).name for d in (native_dtype, onnx_dtype) if np.dtype(d).kind == "f"]
    if not names:
        return Tolerance(0.0, 0.0)
    worst = max(names, key=lambda n: DEFAULT_TOLERANCES.get(n, (1e-4, 1e-5))[0])
    rtol, atol = DEFAULT_TOLERANCES.get(worst, DEFAULT_TOLERANCES["float32"])
    return Tolerance(rtol, atol)


@dataclass
class Noise:
    """The native model's own noise on some rows of one batch: ``rows`` (indices into the batch), this
    output from each perturbed native model on those rows, and for labels the quantity ``predict`` compares,
    exact and perturbed (None when no continuous quantity describes the decision)."""

    rows: np.ndarray
    draws: list
    deciding: np.ndarray | None = None
    deciding_draws: list = field(default_factory=list)
    precision: str = "float32"


@dataclass
class OutputStats:
    name: str
    kind: str
    total: int = 0  # compared elements
    mismatched: int = 0
    excused: int = 0  # label differences on rows where the native model's own decision is tied within noise
    max_abs_error: float | None = None
    mean_abs_error: float | None = None
    max_rel_error: float | None = None
    mean_rel_error: float | None = None
    atol: float | None = None
    rtol: float | None = None
    native_dtype: str = ""
    onnx_dtype: str = ""
    shape: list = field(default_factory=list)  # per-row shape
    worst: dict | None = None
    note: str | None = None
    tolerance_source: str | None = None  # "default" | "noise floor" | "--tol" | "--rtol/--atol" | "exact"
    noise_elements: int = 0  # float elements beyond the default tolerance but within their noise floor
    noise_floor_max: float | None = None  # the largest floor (NOISE_FACTOR x change) measured
    noise_precision: str | None = None  # the float type the floor was measured at
    margin: float | None = None  # worst observed error / the tolerance allowed for that element (< 1 passes)
    decided_by: str | None = None  # labels: what the native predict compares
    failed_rows: list = field(default_factory=list)  # the first FAILED_ROWS_KEPT rows that disagree
    nan_mismatched: int = 0  # elements NaN on one side only

    @property
    def passed(self) -> bool:
        return self.mismatched == 0 and not self.note_blocks

    @property
    def note_blocks(self) -> bool:
        return self.note is not None and self.note.startswith("cannot compare")

    @property
    def mismatch_fraction(self) -> float:
        return self.mismatched / self.total if self.total else 0.0

    def to_dict(self) -> dict:
        return {
            "name": self.name, "kind": self.kind, "max_abs_error": _num(self.max_abs_error),
            "mean_abs_error": _num(self.mean_abs_error), "max_rel_error": _num(self.max_rel_error),
            "mean_rel_error": _num(self.mean_rel_error), "mismatched": self.mismatched,
            "mismatch_fraction": self.mismatch_fraction, "excused_ties": self.excused, "total": self.total,
            "atol": self.atol, "rtol": self.rtol, "native_dtype": self.native_dtype, "onnx_dtype": self.onnx_dtype,
            "shape": self.shape, "worst": self.worst, "note": self.note, "passed": self.passed,
            "tolerance": self.tolerance_dict(), "margin": _num(self.margin), "decided_by": self.decided_by,
            "failed_rows": self.failed_rows, "nan_mismatched": self.nan_mismatched,
        }

    @property
    def symptoms(self) -> set[str]:
        """What kind of disagreement this is: "nan", "labels", "values" or "shape"."""
        if self.passed:
            return set()
        if self.note_blocks:
            return {"shape"}
        found = {"nan"} if self.nan_mismatched else set()
        if self.mismatched > self.nan_mismatched:
            found.add("labels" if self.kind == "label" else "values")
        return found

    def tolerance_dict(self) -> dict:
        """What the output was held to, and where that came from."""
        out = {"source": self.tolerance_source, "rtol": self.rtol, "atol": self.atol}
        if self.kind == "label" or self.atol is None:
            out["exact"] = True
        if self.noise_precision:
            out.update(noise_factor=NOISE_FACTOR, noise_draws=NOISE_DRAWS, noise_precision=self.noise_precision,
                       noise_elements=self.noise_elements, noise_floor_max=_num(self.noise_floor_max))
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "OutputStats":
        """Back from ``to_dict`` (a cached or remote result)."""
        tol = d.get("tolerance") or {}
        return cls(d["name"], d.get("kind", "value"), d.get("total", 0), d.get("mismatched", 0),
                   d.get("excused_ties", 0), d.get("max_abs_error"), d.get("mean_abs_error"), d.get("max_rel_error"),
                   d.get("mean_rel_error"), d.get("atol"), d.get("rtol"), d.get("native_dtype", ""),
                   d.get("onnx_dtype", ""), list(d.get("shape") or []), d.get("worst"), d.get("note"),
                   tolerance_source=tol.get("source"), noise_elements=tol.get("noise_elements", 0),
                   noise_floor_max=tol.get("noise_floor_max"), noise_precision=tol.get("noise_precision"),
                   margin=d.get("margin"), decided_by=d.get("decided_by"), failed_rows=list(d.get("failed_rows") or []),
                   nan_mismatched=d.get("nan_mismatched", 0))


def _num(x):
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


class OutputComparison:
    """Accumulates the comparison of one output over batches."""

    def __init__(self, name: str, kind: str = "value", tolerance: Tolerance | None = None,
                 scores_tolerance: Tolerance | None = None, classes=None, *, source: str | None = None,
                 decided_by: str | None = None):
        self.stats = OutputStats(name, kind, decided_by=decided_by)
        self.tolerance = tolerance
        self.scores_tolerance = scores_tolerance
        self.classes = list(classes) if classes is not None else None
        self.source = source or ("--tol" if tolerance is not None else "default")
        self._sum_abs = 0.0
        self._sum_rel = 0.0
        self._float_count = 0
        self._worst_key = -1.0

    @property
    def overridden(self) -> bool:
        """A tolerance the user stated: the noise floor never widens it."""
        return self.tolerance is not None

    def suspects(self, native, onnx) -> np.ndarray:
        """Rows of a batch that fail without noise evidence: a float beyond the tolerance, a label that
        differs. The check measures the native model's noise on these rows only."""
        native, onnx = np.asarray(native), np.asarray(onnx)
        native, onnx, note = _align(native, onnx)
        if (note and note.startswith("cannot compare")) or native.ndim == 0 or native.shape[0] == 0:
            return np.zeros(native.shape[0] if native.ndim else 0, dtype=bool)
        if _is_float(native, onnx):
            n, diff = _diff(native, onnx)
            bad = diff > self._base(native, onnx).allowed(n)
        else:
            bad = ~_equal(native, onnx)
        return bad.reshape(bad.shape[0], -1).any(axis=1)

    def _base(self, native, onnx) -> Tolerance:
        return self.tolerance or default_tolerance(native.dtype, onnx.dtype)

    def update(self, native, onnx, row_offset: int, inputs: dict | None = None, native_scores=None,
               noise: Noise | None = None) -> None:
        s = self.stats
        if s.note_blocks:
            return
        native, onnx = np.asarray(native), np.asarray(onnx)
        native, onnx, note = _align(native, onnx)
        if note:
            if note.startswith("cannot compare"):
                s.note = note
                s.mismatched += max(native.size, onnx.size, 1)
                return
            s.note = s.note or note
        if not s.native_dtype:
            s.native_dtype, s.onnx_dtype = str(native.dtype), str(onnx.dtype)
            s.shape = list(native.shape[1:])
        if native.shape[0] == 0:
            return
        if noise is not None and s.noise_precision is None:
            s.noise_precision = noise.precision
        if _is_float(native, onnx):
            self._update_floats(native, onnx, row_offset, inputs, noise)
        else:
            s.tolerance_source = "exact"
            self._update_exact(native, onnx, row_offset, inputs, native_scores, noise)

    def _update_floats(self, native, onnx, row_offset, inputs, noise=None):
        s = self.stats
        tol = self._base(native, onnx)
        s.rtol, s.atol = tol.rtol, tol.atol
        n, diff = _diff(native, onnx)
        base = tol.allowed(n)
        allowed = base
        if noise is not None and not self.overridden and len(noise.rows):
            floor = NOISE_FACTOR * _largest_change(n[noise.rows], noise.draws)
            allowed = base.copy()
            allowed[noise.rows] = np.maximum(base[noise.rows], floor)
            finite = floor[np.isfinite(floor)]
            if finite.size:
                m = float(finite.max())
                s.noise_floor_max = m if s.noise_floor_max is None else max(s.noise_floor_max, m)
        bad = diff > allowed
        s.noise_elements += int(((diff > base) & ~bad).sum())
        s.nan_mismatched += int((np.isnan(n) != np.isnan(onnx.astype(np.float64, copy=False))).sum())
        self._keep_rows(bad, row_offset)
        if s.tolerance_source in (None, "default"):
            s.tolerance_source = "noise floor" if s.noise_elements else self.source
        rel = diff / np.maximum(np.abs(np.nan_to_num(n)), max(tol.atol, np.finfo(np.float64).tiny))
        s.total += n.size
        s.mismatched += int(bad.sum())
        finite = np.isfinite(diff)
        self._sum_abs += float(diff[finite].sum())
        self._sum_rel += float(rel[finite].sum())
        self._float_count += int(finite.sum())
        if finite.any():
            m = float(diff[finite].max())
            s.max_abs_error = m if s.max_abs_error is None else max(s.max_abs_error, m)
            r = float(rel[finite].max())
            s.max_rel_error = r if s.max_rel_error is None else max(s.max_rel_error, r)
        if not finite.all():
            s.max_abs_error = float("inf")
        s.mean_abs_error = self._sum_abs / self._float_count if self._float_count else None
        s.mean_rel_error = self._sum_rel / self._float_count if self._float_count else None
        # worst element: the largest error relative to what is allowed
        score = diff / (allowed + np.finfo(np.float64).tiny)
        flat = int(np.argmax(score))
        key = float(score.reshape(-1)[flat])
        s.margin = key if s.margin is None else max(s.margin, key)
        if key > self._worst_key:
            self._worst_key = key
            self._record_worst(native, onnx, flat, row_offset, inputs)

    def _update_exact(self, native, onnx, row_offset, inputs, native_scores, noise=None):
        s = self.stats
        s.total += native.size
        bad = ~_equal(native, onnx)
        if bad.any() and native.ndim == 1 and s.kind == "label":
            if noise is not None:
                tied = self._tied_within_noise(native, onnx, bad, noise)
            elif native_scores is not None:
                tied = self._tied(native, onnx, np.asarray(native_scores), bad)
            else:
                tied = np.zeros_like(bad)
            s.excused += int(tied.sum())
            bad = bad & ~tied
        count = int(bad.sum())
        s.mismatched += count
        self._keep_rows(bad, row_offset)
        if count and self._worst_key < 1.0:
            self._worst_key = 1.0
            self._record_worst(native, onnx, int(np.flatnonzero(bad.reshape(-1))[0]), row_offset, inputs)

    def _keep_rows(self, bad, row_offset: int) -> None:
        room = FAILED_ROWS_KEPT - len(self.stats.failed_rows)
        if room > 0 and bad.any():
            rows = np.flatnonzero(bad.reshape(bad.shape[0], -1).any(axis=1))[:room]
            self.stats.failed_rows.extend(int(row_offset + r) for r in rows)

    def _tied_within_noise(self, native, onnx, bad, noise: Noise) -> np.ndarray:
        """Rows where the native model's own decision between its label and the ONNX label is within its
        noise: the deciding quantity separates them by no more than NOISE_FACTOR x its change under
        perturbation, or a perturbed native model predicts the ONNX label."""
        tied = np.zeros(len(native), dtype=bool)
        rows = noise.rows
        if not len(rows):
            return tied
        here = bad[rows]
        for draw in noise.draws:  # direct evidence: the native model itself, perturbed, says so
            here_tied = _equal(np.asarray(draw).reshape(-1), onnx[rows])
            tied[rows[here & here_tied]] = True
        q = noise.deciding
        if q is None or not noise.deciding_draws:
            return tied
        q = np.asarray(q, dtype=np.float64)
        if q.ndim == 1:  # a binary margin: the decision flips where it changes sign
            margin = np.abs(q)
            change = _largest_change(q, noise.deciding_draws)
        elif self.classes is not None and q.ndim == 2:
            a = self._columns(native[rows], q.shape[1])
            b = self._columns(onnx[rows], q.shape[1])
            known = (a >= 0) & (b >= 0)
            a, b = np.where(known, a, 0), np.where(known, b, 0)
            idx = np.arange(len(rows))

            def gap(values):
                v = np.asarray(values, dtype=np.float64)
                return v[idx, a] - v[idx, b]

            with np.errstate(invalid="ignore"):
                exact = gap(q)
                margin = np.where(known, np.abs(exact), np.inf)
                change = _largest_change(exact, [gap(d) for d in noise.deciding_draws])
        else:
            return tied
        with np.errstate(invalid="ignore"):
            within = np.nan_to_num(margin, nan=np.inf) <= NOISE_FACTOR * np.nan_to_num(change, nan=0.0)
        tied[rows[here & within]] = True
        return tied

    def _columns(self, labels, width: int) -> np.ndarray:
        index = {}
        for i, c in enumerate(self.classes[:width]):
            index.setdefault(_key(c), i)
            index.setdefault(str(c), i)
        return np.array([index.get(_key(v), index.get(str(_key(v)), -1)) for v in labels], dtype=np.int64)

    def _tied(self, native, onnx, scores, bad) -> np.ndarray:
        """Rows where the native scores of the native label and the ONNX label are equal within tolerance
        (used where no noise evidence is at hand, e.g. a replayed record's stored scores)."""
        tol = self.scores_tolerance or Tolerance(*DEFAULT_TOLERANCES["float32"])
        tied = np.zeros(len(native), dtype=bool)
        rows = np.flatnonzero(bad)
        if scores.ndim == 1:  # binary decision_function: class scores are (-d, d)
            d = np.abs(scores[rows].astype(np.float64))
            tied[rows] = 2 * d <= tol.atol + tol.rtol * d
            return tied
        if self.classes is None or scores.ndim != 2:
            return tied
        index = {c: i for i, c in enumerate(self.classes)}
        index.update({str(c): i for i, c in enumerate(self.classes)})
        for r in rows:
            a = index.get(_key(native[r]))
            b = index.get(_key(onnx[r]))
            if a is None or b is None or a >= scores.shape[1] or b >= scores.shape[1]:
                continue
            sa, sb = float(scores[r, a]), float(scores[r, b])
            tied[r] = abs(sa - sb) <= tol.atol + tol.rtol * max(abs(sa), abs(sb))
        return tied

    def _record_worst(self, native, onnx, flat, row_offset, inputs):
        per_row = int(np.prod(native.shape[1:])) if native.ndim > 1 else 1
        row = flat // per_row
        self.stats.worst = {
            "row": int(row_offset + row),
            "index": [int(i) for i in np.unravel_index(flat, native.shape)[1:]],
            "native": _scalar(native.reshape(-1)[flat]),
            "onnx": _scalar(onnx.reshape(-1)[flat]),
            "input": _row_preview(inputs, row) if inputs else None,
        }

    def result(self) -> OutputStats:
        return self.stats


def _key(value):
    return value.item() if hasattr(value, "item") else value


def _is_float(native, onnx) -> bool:
    return (native.dtype.kind in "fc" or onnx.dtype.kind in "fc") and native.dtype.kind not in "OUS" \
        and onnx.dtype.kind not in "OUS"


def _diff(native, onnx):
    """The native values as float64 and the element-wise error: NaN = NaN, equal infinities agree, a NaN on
    one side only is an infinite error."""
    n = native.astype(np.float64, copy=False)
    o = onnx.astype(np.float64, copy=False)
    both_nan = np.isnan(n) & np.isnan(o)
    same_inf = np.isinf(n) & (n == o)
    with np.errstate(invalid="ignore"):
        diff = np.abs(o - n)
    diff = np.where(both_nan | same_inf, 0.0, diff)
    return n, np.where(np.isnan(diff), np.inf, diff)


def _equal(native, onnx) -> np.ndarray:
    if native.dtype.kind in "OUS" or onnx.dtype.kind in "OUS":
        return native.astype(str) == onnx.astype(str)
    return native == onnx


def _largest_change(exact, draws) -> np.ndarray:
    """Element-wise, the largest |draw - exact| over the perturbed runs (0 where none is finite)."""
    exact = np.asarray(exact, dtype=np.float64)
    change = np.zeros(exact.shape)
    for draw in draws:
        d = np.asarray(draw, dtype=np.float64).reshape(exact.shape)
        with np.errstate(invalid="ignore"):
            delta = np.abs(d - exact)
        change = np.maximum(change, np.where(np.isfinite(delta), delta, 0.0))
    return change


def _scalar(value):
    value = _key(value)
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)


def _row_preview(inputs: dict, row: int) -> dict:
    out = {}
    for name, arr in inputs.items():
        values = np.asarray(arr[row]).reshape(-1)
        shown = [_scalar(v) for v in values[:ROW_PREVIEW]]
        out[name] = shown if len(values) <= ROW_PREVIEW else shown + [f"... ({len(values)} values)"]
    return out


def _align(native: np.ndarray, onnx: np.ndarray):
    """Reconcile shapes that differ only by singleton axes (``[N]`` vs ``[N, 1]``); refuse others."""
    if native.shape == onnx.shape:
        return native, onnx, None
    if native.size == onnx.size and [d for d in native.shape if d != 1] == [d for d in onnx.shape if d != 1]:
        return native, onnx.reshape(native.shape), f"shape {list(onnx.shape[1:])} compared as {list(native.shape[1:])}"
    return native, onnx, f"cannot compare: native shape {list(native.shape)} vs ONNX {list(onnx.shape)}"
