"""What migrating an old scikit-learn file did, and what it could not find: the records ``migrate`` writes and
``state`` reads (``Change``, ``Migration``), the inert stand-ins for classes that are not here (``Missing``), and the
walk over a loaded model that finds them. A leaf: both the loader and the state rules build on it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Change:
    """One thing migrating did: ``kind`` is ``name`` (a moved module or class), ``layout`` (an object's stored
    form rewritten), ``attribute`` (renamed), ``parameter`` (an old value or one added since), ``fill`` (a value
    derived from the fitted arrays), ``rebuild`` (an object today's release builds differently, rebuilt from its
    owner), ``encoding`` or ``container`` (how the bytes were read), ``default`` (a parameter added since,
    set to its default)."""

    kind: str
    what: str
    since: str = ""

    @property
    def significant(self) -> bool:
        """Everything but a parameter the file predates, set to its default (the object's fitted state is used as
        saved then: the file "loads as saved")."""
        return self.kind != "default"

    def text(self) -> str:
        return self.what + (f" (scikit-learn {self.since})" if self.since and self.since[:1].isdigit() else
                            f" ({self.since})" if self.since else "")


@dataclass
class Migration:
    """Every change a load applied, in order, counted (a forest's 500 trees make one line)."""

    changes: Counter = field(default_factory=Counter)
    python2: bool = False  # the stream held Python 2 ``str`` opcodes

    def add(self, kind: str, what: str, since: str = "") -> None:
        self.changes[Change(kind, what, since)] += 1

    def __bool__(self) -> bool:
        return bool(self.changes)

    @property
    def migrated(self) -> bool:
        """Did loading change anything of the saved state (not only fill parameters added since)?"""
        return any(c.significant for c in self.changes)

    def __len__(self) -> int:
        return len(self.changes)

    def lines(self) -> list[str]:
        return [c.text() + (f" ×{n}" if n > 1 else "") for c, n in self.changes.items()]

    def to_list(self) -> list[dict]:
        return [{"kind": c.kind, "what": c.what, "since": c.since, "count": n, "text": c.text()}
                for c, n in self.changes.items()]


class Missing:
    """Stands for a class or function a pickle names that does not exist here. Holds what the pickle gave it
    (arguments, state) as data and never calls anything; ``repair`` may rebuild it from its owner."""

    module = name = ""
    args: tuple = ()
    state = None
    removed = ""  # the release that removed it, when the history table says so

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.args = args
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state

    def __reduce__(self):
        raise TypeError(f"{self.qualname()} is missing here and cannot be written again")

    @classmethod
    def qualname(cls) -> str:
        return f"{cls.module}.{cls.name}"


_MISSING: dict[tuple[str, str], type] = {}


def missing_class(module: str, name: str, removed: str = "") -> type:
    """The :class:`Missing` subclass standing for ``module.name`` (one per name)."""
    key = (module, name)
    if key not in _MISSING:
        _MISSING[key] = type(name.rpartition(".")[2] or "Missing", (Missing,),
                             {"module": module, "name": name, "removed": removed, "__module__": __name__})
    return _MISSING[key]



def walk(obj, path: str = "", seen=None):
    """(path, value) for ``obj`` and everything reachable through containers, object arrays and the attributes of
    scikit-learn objects (and of Missing records: their arguments and state)."""
    import numpy as np

    seen = set() if seen is None else seen
    stack = [(path or type(obj).__name__, obj)]
    while stack:
        where, value = stack.pop()
        if id(value) in seen or value is None or isinstance(value, (str, bytes, int, float, bool)):
            continue
        seen.add(id(value))
        yield where, value
        if isinstance(value, dict):
            stack.extend((f"{where}[{k!r}]", v) for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(value))
        elif isinstance(value, np.ndarray):
            if value.dtype.hasobject:
                stack.extend((f"{where}[{i}]", v) for i, v in enumerate(value.ravel().tolist()))
        elif isinstance(value, Missing):
            stack.append((f"{where}(args)", value.args))
            stack.append((f"{where}(state)", value.state))
        elif _is_library_object(value):
            stack.extend((f"{where}.{k}", v) for k, v in vars(value).items())


def _is_library_object(value) -> bool:
    module = type(value).__module__ or ""
    return hasattr(value, "__dict__") and module.split(".", 1)[0] in ("sklearn", "joblib")


def find_missing(obj):
    """(qualname, where, removed-in) for each Missing record still in ``obj``, outermost first."""
    seen: set[str] = set()
    for where, value in walk(obj):
        if isinstance(value, Missing) or (isinstance(value, type) and issubclass(value, Missing)):
            cls = value if isinstance(value, type) else type(value)
            if cls.qualname() not in seen:
                seen.add(cls.qualname())
                yield cls.qualname(), where, cls.removed
