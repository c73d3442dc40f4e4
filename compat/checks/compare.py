"""The tolerance policy and per-output statistics, accumulated batch by batch.

- integer, string and bool outputs must be equal;
- floats pass when ``|onnx - native| <= atol + rtol * |native|`` (the native model is the reference),
  with defaults tied to the less precise of the two dtypes, overridable per output;
- a label may differ only where the native model's own scores for the two classes are tied within the
  scores' tolerance (then it is counted as *excused*, not hidden);
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


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float

    def to_dict(self) -> dict:
        return {"rtol": self.rtol, "atol": self.atol}


def default_tolerance(native_dtype: np.dtype, onnx_dtype: np.dtype) -> Tolerance:
    names = [np.dtype(d).name for d in (native_dtype, onnx_dtype) if np.dtype(d).kind == "f"]
    if not names:
        return Tolerance(0.0, 0.0)
    worst = max(names, key=lambda n: DEFAULT_TOLERANCES.get(n, (1e-4, 1e-5))[0])
    rtol, atol = DEFAULT_TOLERANCES.get(worst, DEFAULT_TOLERANCES["float32"])
    return Tolerance(rtol, atol)


@dataclass
class OutputStats:
    name: str
    kind: str
    total: int = 0  # compared elements
    mismatched: int = 0
    excused: int = 0  # label differences on rows whose native scores are tied
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
        }

    @classmethod
    def from_dict(cls, d: dict) -> "OutputStats":
        """Back from ``to_dict`` (a cached or remote result)."""
        return cls(d["name"], d.get("kind", "value"), d.get("total", 0), d.get("mismatched", 0),
                   d.get("excused_ties", 0), d.get("max_abs_error"), d.get("mean_abs_error"), d.get("max_rel_error"),
                   d.get("mean_rel_error"), d.get("atol"), d.get("rtol"), d.get("native_dtype", ""),
                   d.get("onnx_dtype", ""), list(d.get("shape") or []), d.get("worst"), d.get("note"))


def _num(x):
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


class OutputComparison:
    """Accumulates the comparison of one output over batches."""

    def __init__(self, name: str, kind: str = "value", tolerance: Tolerance | None = None,
                 scores_tolerance: Tolerance | None = None, classes=None):
        self.stats = OutputStats(name, kind)
        self.tolerance = tolerance
        self.scores_tolerance = scores_tolerance
        self.classes = list(classes) if classes is not None else None
        self._sum_abs = 0.0
        self._sum_rel = 0.0
        self._float_count = 0
        self._worst_key = -1.0

    def update(self, native, onnx, row_offset: int, inputs: dict | None = None, native_scores=None) -> None:
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
        floats = native.dtype.kind in "fc" or onnx.dtype.kind in "fc"
        if floats and native.dtype.kind not in "OUS" and onnx.dtype.kind not in "OUS":
            self._update_floats(native, onnx, row_offset, inputs)
        else:
            self._update_exact(native, onnx, row_offset, inputs, native_scores)

    def _update_floats(self, native, onnx, row_offset, inputs):
        s = self.stats
        tol = self.tolerance or default_tolerance(native.dtype, onnx.dtype)
        s.rtol, s.atol = tol.rtol, tol.atol
        n = native.astype(np.float64, copy=False)
        o = onnx.astype(np.float64, copy=False)
        both_nan = np.isnan(n) & np.isnan(o)
        same_inf = np.isinf(n) & (n == o)
        diff = np.abs(o - n)
        diff = np.where(both_nan | same_inf, 0.0, diff)
        diff = np.where(np.isnan(diff), np.inf, diff)  # NaN on one side only
        bad = diff > tol.atol + tol.rtol * np.abs(np.nan_to_num(n))
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
        score = diff / (tol.atol + tol.rtol * np.abs(np.nan_to_num(n)) + np.finfo(np.float64).tiny)
        flat = int(np.argmax(score))
        key = float(score.reshape(-1)[flat])
        if key > self._worst_key:
            self._worst_key = key
            self._record_worst(native, onnx, flat, row_offset, inputs)

    def _update_exact(self, native, onnx, row_offset, inputs, native_scores):
        s = self.stats
        if native.dtype.kind in "OUS" or onnx.dtype.kind in "OUS":
            equal = native.astype(str) == onnx.astype(str)
        else:
            equal = native == onnx
        s.total += native.size
        bad = ~equal
        if bad.any() and native_scores is not None and native.ndim == 1:
            tied = self._tied(native, onnx, np.asarray(native_scores), bad)
            s.excused += int(tied.sum())
            bad = bad & ~tied
        count = int(bad.sum())
        s.mismatched += count
        if count and self._worst_key < 1.0:
            self._worst_key = 1.0
            self._record_worst(native, onnx, int(np.flatnonzero(bad.reshape(-1))[0]), row_offset, inputs)

    def _tied(self, native, onnx, scores, bad) -> np.ndarray:
        """Rows where the native scores of the native label and the ONNX label are equal within tolerance."""
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
