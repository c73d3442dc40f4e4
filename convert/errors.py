"""One family of errors. Each carries a one-line message naming the file and a hint;
the CLI maps the class to an exit code (see ``exit_code``). Tracebacks are for bugs only."""

from __future__ import annotations

from pathlib import Path


class ModelportError(Exception):
    """Base of every error a user can cause. ``exit_code`` is what the CLI returns."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | Path | None = None, hint: str | None = None):
        self.message = message
        self.path = str(path) if path is not None else None
        self.hint = hint
        super().__init__(self.line())

    def line(self) -> str:
        head = f"{self.path}: {self.message}" if self.path else self.message
        return f"{head} ({self.hint})" if self.hint else head


class BadInputError(ModelportError):
    """The file, directory or data given cannot be used as it is (exit 2)."""

    exit_code = 2


class ModelClassError(BadInputError):
    """The model class named (``--model-class``) cannot be one: no such file or attribute, not a class, not the
    framework's model type. Exit 2 like any bad input; a replay re-raises it instead of reporting "the model
    no longer loads", because it is the caller's mistake, not the environment's."""


class CannotLoadError(BadInputError):
    """The file cannot be loaded in this environment for a diagnosed reason (``convert.adapters.diagnosis``): ``category``
    is ``version-drift``, ``missing-class`` or ``corrupt``, and the audit reports it as it is. Exit 2."""

    def __init__(self, message: str, *, category: str, path=None, hint=None):
        self.category = category
        super().__init__(message, path=path, hint=hint)


class MissingCodeError(BadInputError):
    """The file needs classes that are not here (exit 2). ``missing`` lists (qualname, where in the model, the
    release that removed it or ""): a class of the script that saved it, a library not installed, or a private
    class a library removed; each is named, never blamed on another library's version."""

    def __init__(self, message: str, missing=(), **kw):
        self.missing = tuple(missing)
        super().__init__(message, **kw)


class UnsafeArtifactError(ModelportError):
    """Loading would run code the static scan does not trust (exit 1)."""

    exit_code = 1

    def __init__(self, message: str, *, path=None, hint=None, findings=()):
        self.findings = tuple(findings)
        super().__init__(message, path=path, hint=hint)


class UnsupportedModelError(ModelportError):
    """No adapter or converter handles this model, or part of it (exit 3)."""

    exit_code = 3


class EnvironmentProblem(ModelportError):
    """A needed library is missing or cannot be imported with what is installed (exit 3)."""

    exit_code = 3


class OutOfMemoryError(BadInputError):
    """Loading it needs more memory than this process can get: the sizes a file declares pass a bound (a
    compression bomb), or an allocation failed while loading. Exit 2, like other input that cannot be used as
    it is; the audit reports it as ``out-of-memory``, never as a damaged file."""

    exit_code = 2
