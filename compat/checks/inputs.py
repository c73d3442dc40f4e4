"""Inputs for a check: synthesized from a Signature, or read from the user's files, always in batches.

Synthesized rows follow what the model told its adapter (``Domain``): categories it knows, words in its
vocabulary, the range its scaler saw, and its split points, hit exactly and one float32 step either
side, where a conversion is most likely to disagree. Values are float32-representable, so a float32
and a float64 graph see the very same numbers as the native model. Generation is seeded and happens in
fixed blocks, so the rows do not depend on the batch size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from convert.errors import BadInputError
from convert.spec import Domain, Signature, TensorSpec, numpy_dtype

BLOCK = 1024  # rows generated per seeded block
BATCH_BYTES = 16 << 20  # an automatic batch holds about this much input
BATCH_ROWS = (64, 65536)  # ... within these row counts
DEFAULT_DIM = 8  # a symbolic non-batch dimension, when nothing says better
UNSEEN_WORD = "zqxjunseen"
UNSEEN_CATEGORY = "__unseen__"


@dataclass
class InputSource:
    """Where the rows come from. ``batches`` can be iterated several times and yields the same rows."""

    description: str
    rows: int | None
    _batches: Callable[[int], Iterator[dict[str, np.ndarray]]]

    def batches(self, batch_size: int = 4096) -> Iterator[dict[str, np.ndarray]]:
        return self._batches(max(1, int(batch_size)))

    def to_dict(self) -> dict:
        return {"source": self.description, "rows": self.rows}


def auto_batch_size(signature: Signature) -> int:
    """Rows per batch so that one batch of inputs is about BATCH_BYTES: large batches amortise the per-call
    cost of both runtimes, the cap keeps memory flat whatever the row count (wide images get few rows)."""
    per_row = 0
    for spec in signature.inputs:
        cells = 1
        for d in spec.shape[1:]:
            cells *= d if isinstance(d, int) else DEFAULT_DIM
        per_row += cells * (64 if spec.dtype == "string" else numpy_dtype(spec.dtype).itemsize)
    rows = BATCH_BYTES // max(per_row, 1)
    return int(min(max(rows, BATCH_ROWS[0]), BATCH_ROWS[1]))


# ---------------------------------------------------------------------------------------------
# synthesis


def synthesize(signature: Signature, rows: int = 1000, seed: int = 0) -> InputSource:
    if rows <= 0:
        raise BadInputError(f"--rows must be positive, got {rows}")

    def blocks():
        for b, start in enumerate(range(0, rows, BLOCK)):
            n = min(BLOCK, rows - start)
            rng = np.random.default_rng([seed, b])
            yield {spec.name: synthesize_tensor(spec, n, rng) for spec in signature.inputs}

    return InputSource(f"synthesized (seed {seed})", rows, lambda bs: _rebatch(blocks(), bs))


def synthesize_tensor(spec: TensorSpec, n: int, rng: np.random.Generator) -> np.ndarray:
    shape = [n] + [d if isinstance(d, int) else DEFAULT_DIM for d in spec.shape[1:]]
    columns = shape[-1] if len(shape) >= 2 else 1
    doms = list(spec.domains)
    if len(doms) == columns and len(shape) >= 2:
        cols = [synthesize_values(doms[j], int(np.prod(shape[:-1])), rng, spec.dtype) for j in range(columns)]
        arr = np.stack(cols, axis=-1).reshape(shape)
    else:
        d = doms[0] if doms else Domain()
        arr = synthesize_values(d, int(np.prod(shape)), rng, spec.dtype).reshape(shape)
    return arr


def synthesize_values(d: Domain, n: int, rng: np.random.Generator, dtype: str) -> np.ndarray:
    if dtype == "string":
        return _strings(d, n, rng)
    if d.categories:
        values = np.asarray(d.categories)
        out = values[rng.integers(0, len(values), n)]
        if d.unknown_allowed and n >= 10:
            mask = rng.random(n) < 0.03
            if out.dtype.kind in "iuf":
                out = out.astype(np.float64 if out.dtype.kind == "f" else out.dtype)
                out[mask] = np.max(values) + 1
        return _finish(out, d, rng, dtype)
    if dtype == "bool":
        return rng.random(n) < 0.5
    if d.mean is not None:
        out = rng.normal(d.mean, d.std if d.std and np.isfinite(d.std) else 1.0, n)
    elif d.low is not None and d.high is not None:
        span = (d.high - d.low) or 1.0
        out = rng.uniform(d.low - 0.05 * span, d.high + 0.05 * span, n)
    elif np.dtype(numpy_dtype(dtype)).kind in "iu":
        out = rng.integers(0, 10, n).astype(np.float64)
    else:
        out = rng.normal(0.0, 1.0, n)
    if d.thresholds:
        out = _hit_thresholds(out, np.asarray(d.thresholds, dtype=np.float64), rng)
    if d.integer:
        out = np.round(out)
    return _finish(out, d, rng, dtype)


def _hit_thresholds(out: np.ndarray, thresholds: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Put a quarter of the values on a split point: the float32 at or below it, the float32 above it,
    and one float32 step further out on each side."""
    n = len(out)
    mask = rng.random(n) < 0.25
    k = int(mask.sum())
    if k == 0:
        return out
    t = thresholds[rng.integers(0, len(thresholds), k)]
    below = t.astype(np.float32)
    below = np.where(below.astype(np.float64) > t, np.nextafter(below, np.float32(-np.inf)), below)
    above = np.nextafter(below, np.float32(np.inf))
    choice = rng.integers(0, 4, k)
    picked = np.select(
        [choice == 0, choice == 1, choice == 2],
        [np.nextafter(below, np.float32(-np.inf)), below, above],
        np.nextafter(above, np.float32(np.inf)),
    )
    out = out.copy()
    out[mask] = picked.astype(np.float64)
    return out


def _finish(out: np.ndarray, d: Domain, rng: np.random.Generator, dtype: str) -> np.ndarray:
    np_dtype = numpy_dtype(dtype)
    if np_dtype.kind == "f":
        out = np.asarray(out, dtype=np.float64).astype(np.float32).astype(np_dtype)  # float32-representable
        if d.missing_allowed and len(out) >= 10:
            out[rng.random(len(out)) < 0.05] = np.nan
        return out
    if np_dtype.kind in "iu":
        low = int(d.low) if d.low is not None else None
        high = int(d.high) if d.high is not None else None
        out = np.asarray(out, dtype=np.float64)
        if low is not None or high is not None:
            out = np.clip(out, low, None if high is None else high - 1)
        return np.round(out).astype(np_dtype)
    if np_dtype.kind == "b":
        return np.asarray(out).astype(bool)
    return np.asarray(out)


def _strings(d: Domain, n: int, rng: np.random.Generator) -> np.ndarray:
    if d.categories:
        values = np.asarray([str(c) for c in d.categories], dtype=object)
        out = values[rng.integers(0, len(values), n)]
        if d.unknown_allowed and n >= 10:
            out[rng.random(n) < 0.03] = UNSEEN_CATEGORY
        return out.astype(object)
    vocab = list(d.vocabulary or ())
    if not vocab:
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
        vocab = ["".join(rng.choice(letters, rng.integers(2, 8))) for _ in range(200)]
    out = np.empty(n, dtype=object)
    lengths = rng.integers(1, 13, n)
    for i in range(n):
        words = [vocab[j] for j in rng.integers(0, len(vocab), lengths[i])]
        if rng.random() < 0.1:
            words.append(UNSEEN_WORD)
        if d.lowercase:
            words = [_case_variant(w, rng) for w in words]
        sep = rng.choice([" ", " ", " ", ", ", ". ", "! "])
        out[i] = sep.join(words)
    return out


def _case_variant(word: str, rng: np.random.Generator) -> str:
    r = rng.random()
    if r < 0.2:
        return word.capitalize()
    if r < 0.3:
        return word.upper()
    return word


# ---------------------------------------------------------------------------------------------
# files


def read_inputs(path: str | Path, signature: Signature) -> InputSource:
    """Rows from ``.npz`` / ``.npy`` / ``.csv`` / ``.parquet``, matched to the signature's inputs."""
    path = Path(path)
    if not path.exists():
        raise BadInputError("no such file", path=path)
    if path.is_dir():
        raise BadInputError("is a directory; --inputs takes a .npz, .npy, .csv or .parquet file", path=path)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise BadInputError(f"unknown input format {path.suffix or '(no suffix)'}", path=path,
                            hint="give a .npz, .npy, .csv or .parquet file")
    if path.stat().st_size == 0:
        raise BadInputError("empty file", path=path)
    source = reader(path, signature)
    if source.rows is None and next(iter(source.batches(1)), None) is None:  # streamed: look at the first row
        source.rows = 0
    return source


def _read_npz(path: Path, signature: Signature) -> InputSource:
    """Arrays are matched to inputs by name. A file with a single array feeds a model with a single input
    under another name only when its shape fits that input; the source's description says so."""
    try:
        archive = np.load(path, allow_pickle=False)
        names = list(archive.files)
    except Exception as exc:
        raise BadInputError(f"not a readable .npz archive ({type(exc).__name__})", path=path) from None
    wanted = signature.input_names
    description = str(path)
    try:
        if all(n in names for n in wanted):
            arrays = {n: archive[n] for n in wanted}
        elif len(wanted) == 1 and len(names) == 1:
            spec, arr = signature.inputs[0], archive[names[0]]
            if not _fits(arr, spec):
                raise BadInputError(f"has no array named {spec.name}; its only array, {names[0]} "
                                    f"{list(arr.shape)}, does not fit the model's input {spec.describe()}",
                                    path=path, hint=f"save the rows as {spec.name}=... (np.savez)")
            arrays = {spec.name: arr}
            description = f"{path} (its only array, {names[0]}, taken as input {spec.name}: the shapes agree)"
        else:
            missing = [n for n in wanted if n not in names]
            raise BadInputError(f"has no array named {', '.join(missing)} (it has: {', '.join(names) or 'none'})",
                                path=path, hint=f"name the arrays after the model's inputs: {', '.join(wanted)}")
    except ValueError as exc:  # object arrays refuse to load without pickle
        raise BadInputError(f"holds an array that needs pickle to read ({exc})", path=path,
                            hint="save strings as fixed-width unicode arrays (dtype '<U...')") from None
    return _from_arrays(path, arrays, signature, description)


def _fits(arr: np.ndarray, spec: TensorSpec) -> bool:
    """Could ``arr`` hold rows of ``spec``: same rank (a 1-d array of strings for one text column), and every
    fixed dimension after the batch equal."""
    shape = arr.shape
    if spec.dtype == "string" and arr.ndim == 1 and len(spec.shape) == 2:
        shape = (shape[0], 1)
    if len(shape) != len(spec.shape):
        return False
    return all(not isinstance(want, int) or got == want for got, want in zip(shape[1:], spec.shape[1:]))


def _read_npy(path: Path, signature: Signature) -> InputSource:
    if len(signature.inputs) != 1:
        raise BadInputError(f"a .npy file holds one array but the model takes {len(signature.inputs)} inputs "
                            f"({', '.join(signature.input_names)})", path=path, hint="use a .npz with one array per input")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError:
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise BadInputError(f"not a readable .npy array ({_short(exc)})", path=path) from None
    except Exception as exc:
        raise BadInputError(f"not a readable .npy array ({_short(exc)})", path=path) from None
    return _from_arrays(path, {signature.inputs[0].name: arr}, signature)


def _short(exc) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]


def _from_arrays(path: Path, arrays: dict[str, np.ndarray], signature: Signature,
                 description: str | None = None) -> InputSource:
    rows = None
    for spec in signature.inputs:
        arr = arrays[spec.name]
        if spec.dtype == "string" and arr.ndim == 1 and len(spec.shape) == 2:
            arr = arr.reshape(-1, 1)
            arrays[spec.name] = arr
        if arr.ndim != len(spec.shape):
            raise BadInputError(f"array {spec.name} has shape {list(arr.shape)}; the model takes {spec.describe()}",
                                path=path)
        for i, (got, want) in enumerate(zip(arr.shape[1:], spec.shape[1:]), start=1):
            if isinstance(want, int) and got != want:
                raise BadInputError(f"array {spec.name} has {got} at axis {i}; the model takes {spec.describe()}",
                                    path=path)
        if rows is not None and arr.shape[0] != rows:
            raise BadInputError("arrays have different row counts", path=path)
        rows = arr.shape[0]

    def batches(bs):
        for start in range(0, rows or 0, bs):
            yield {name: np.asarray(arr[start:start + bs]) for name, arr in arrays.items()}

    return InputSource(description or str(path), rows, batches)


def _table_columns(path: Path, header: list[str], signature: Signature) -> list[tuple[str, list[str]]]:
    """For each input, the table columns that feed it, or a BadInputError naming what is missing."""
    plan = []
    for spec in signature.inputs:
        names = list(spec.column_names or ())
        if not names and spec.dtype == "string" and len(signature.inputs) == 1:
            names = ["text"] if "text" in header else header[:1]
        if not names and len(signature.inputs) == 1:
            n = spec.shape[-1] if isinstance(spec.shape[-1], int) else len(header)
            if len(header) != n:
                raise BadInputError(f"has {len(header)} columns; the model takes {n} features",
                                    path=path, hint="keep only the feature columns, in training order")
            names = header
        if not names:
            names = [spec.name]
        missing = [c for c in names if c not in header]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise BadInputError(f"lacks column(s) {shown} that the model was fitted on", path=path,
                                hint=f"its columns are: {', '.join(header[:10])}" + (" ..." if len(header) > 10 else ""))
        plan.append((spec.name, names))
    return plan


def _frame_to_feeds(frame, plan, signature: Signature, path: Path) -> dict[str, np.ndarray]:
    feeds = {}
    for (name, columns), spec in zip(plan, signature.inputs):
        if spec.dtype == "string":
            feeds[name] = frame[columns].astype(str).to_numpy(dtype=object)
            continue
        block = frame[columns]
        try:
            values = block.to_numpy(dtype=np.float64 if numpy_dtype(spec.dtype).kind == "f" else numpy_dtype(spec.dtype))
        except (ValueError, TypeError):
            bad = [c for c in columns if block[c].dtype == object][:3]
            raise BadInputError(f"column(s) {', '.join(bad) or columns[0]} hold text where the model takes numbers",
                                path=path) from None
        feeds[name] = values
    return feeds


def _read_csv(path: Path, signature: Signature) -> InputSource:
    """Stream CSV rows: pyarrow's multi-threaded reader when installed (several times faster than pandas'
    chunked parser), pandas otherwise. Numeric cells left empty are NaN; text columns keep "" as text."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv
    except ImportError:
        return _read_csv_pandas(path, signature)
    try:
        with pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 16)) as probe:
            header = [str(n) for n in probe.schema.names]
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"not a readable CSV file ({_short(exc)})", path=path) from None
    plan = _table_columns(path, header, signature)
    needed = list(dict.fromkeys(c for _, cols in plan for c in cols))
    string_cols = {c for (_, cols), spec in zip(plan, signature.inputs) if spec.dtype == "string" for c in cols}

    def to_feeds(batch) -> dict[str, np.ndarray]:
        columns = {name: batch.column(i) for i, name in enumerate(batch.schema.names)}
        feeds = {}
        for (name, cols), spec in zip(plan, signature.inputs):
            if spec.dtype == "string":
                feeds[name] = np.column_stack([columns[c].to_numpy(zero_copy_only=False).astype(object) for c in cols])
                continue
            target = np.float64 if numpy_dtype(spec.dtype).kind == "f" else numpy_dtype(spec.dtype)
            try:
                feeds[name] = np.column_stack([columns[c].to_numpy(zero_copy_only=False).astype(target) for c in cols])
            except (ValueError, TypeError):
                bad = [c for c in cols if pa.types.is_string(columns[c].type)][:3]
                raise BadInputError(f"column(s) {', '.join(bad) or cols[0]} hold text where the model takes numbers",
                                    path=path) from None
        return feeds

    def batches(bs):
        convert = pacsv.ConvertOptions(include_columns=needed, strings_can_be_null=False,
                                       column_types={c: pa.string() for c in string_cols})
        try:
            with pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 20),  # larger blocks read ahead more
                                convert_options=convert) as reader:
                yield from _rebatch((to_feeds(b) for b in reader if b.num_rows), bs)
        except BadInputError:
            raise
        except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
            raise BadInputError(f"cannot read CSV rows ({_short(exc)})", path=path) from None

    return InputSource(str(path), None, batches)


def _read_csv_pandas(path: Path, signature: Signature) -> InputSource:
    import pandas as pd

    try:
        header = list(pd.read_csv(path, nrows=0).columns)
    except Exception as exc:
        raise BadInputError(f"not a readable CSV file ({_short(exc)})", path=path) from None
    plan = _table_columns(path, [str(h) for h in header], signature)
    string_cols = {c for (_, cols), spec in zip(plan, signature.inputs) if spec.dtype == "string" for c in cols}

    def batches(bs):
        try:
            reader = pd.read_csv(path, chunksize=bs, dtype={c: str for c in string_cols} or None,
                                 keep_default_na=False, na_values={c: [""] for c in set(header) - string_cols})
            for chunk in reader:
                yield _frame_to_feeds(chunk, plan, signature, path)
        except BadInputError:
            raise
        except Exception as exc:
            raise BadInputError(f"cannot read CSV rows ({_short(exc)})", path=path) from None

    return InputSource(str(path), None, batches)


def _read_parquet(path: Path, signature: Signature) -> InputSource:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise BadInputError("reading .parquet needs pyarrow", path=path, hint="pip install pyarrow") from None
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:
        raise BadInputError(f"not a readable Parquet file ({_short(exc)})", path=path) from None
    header = [str(n) for n in pf.schema_arrow.names]
    plan = _table_columns(path, header, signature)
    needed = sorted({c for _, cols in plan for c in cols})

    def batches(bs):
        for batch in pf.iter_batches(batch_size=bs, columns=needed):
            yield _frame_to_feeds(batch.to_pandas(), plan, signature, path)

    return InputSource(str(path), pf.metadata.num_rows, batches)


_READERS = {".npz": _read_npz, ".npy": _read_npy, ".csv": _read_csv, ".parquet": _read_parquet, ".pq": _read_parquet}


def chain(*sources: InputSource) -> InputSource:
    """Rows of several sources one after another (e.g. the user's file, then synthesized boundary rows).
    A source known to hold no rows (a CSV with only a header) is named in the description, never silently
    dropped; when no source has rows there is nothing to compare on."""
    given = tuple(s for s in sources if s is not None)
    empty = [s.description for s in given if s.rows == 0]
    sources = tuple(s for s in given if s.rows != 0)
    if not sources:
        raise BadInputError("holds no rows: nothing to compare on",
                            path=" + ".join(empty) or None,
                            hint="give a file with rows, or leave out --rows 0 to compare on synthesized rows")
    if len(sources) == 1 and not empty:
        return sources[0]
    rows = None if any(s.rows is None for s in sources) else sum(s.rows for s in sources)
    description = " + ".join(s.description for s in sources)
    if empty:
        description += f" only: {', '.join(empty)} holds no rows"

    def batches(bs):
        for source in sources:
            yield from source.batches(bs)

    return InputSource(description, rows, batches)


def _rebatch(blocks, batch_size: int):
    """Regroup a stream of row blocks into batches of ``batch_size`` rows."""
    pending: list[dict[str, np.ndarray]] = []
    count = 0
    for block in blocks:
        pending.append(block)
        count += len(next(iter(block.values())))
        while count >= batch_size:
            merged = {k: np.concatenate([b[k] for b in pending]) for k in pending[0]}
            yield {k: v[:batch_size] for k, v in merged.items()}
            rest = {k: v[batch_size:] for k, v in merged.items()}
            count -= batch_size
            pending = [rest] if count else []
    if count:
        yield {k: np.concatenate([b[k] for b in pending]) for k in pending[0]}
