"""pytest plugin: each golden record a project lists becomes a test item.

    # pyproject.toml of the project
    [tool.modelport]
    records = ["models/*.mprec"]

or ``pytest --modelport-records 'models/*.mprec'``. Registered through the ``pytest11`` entry point, so
a plain ``pytest -q`` picks it up wherever modelport is installed. Inert when no records are configured;
imports nothing heavy until a record item runs.

A record is data: the model class it names (torch state dicts need one) is never imported unless you
pass ``--modelport-trust``. Name the class yourself instead, per record glob (the first glob that matches
a record wins; a file path is relative to the project root, a module spec imports from the current folder)::

    [tool.modelport]
    records = ["models/*.mprec"]
    model_classes = {"models/*.mprec" = "src/nets.py:Net"}

or for every record, ``pytest --modelport-model-class src/nets.py:Net`` (a file path relative to the folder
pytest starts in; it overrides the table). The record's constructor arguments are used with that class.
A record that names a class when none is given and trust is off fails its item with one line saying what
to pass.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("modelport", "golden records (modelport)")
    group.addoption("--modelport-records", action="append", default=[], metavar="GLOB",
                    help="record files to verify as tests (repeatable); adds to [tool.modelport] records")
    group.addoption("--modelport-trust", action="store_true", default=False,
                    help="load record artifacts even when the static scan does not vouch for them")
    group.addoption("--modelport-no-reconvert", action="store_true", default=False,
                    help="do not convert again with today's converter")
    group.addoption("--modelport-model-class", default=None, metavar="MODULE:CLASS",
                    help="the model class for records that need one (pkg.module:Class or path/to/file.py:Class); "
                         "overrides [tool.modelport] model_classes")


def _settings(config) -> dict:
    """The project's ``[tool.modelport]`` table ({} without one)."""
    pyproject = Path(config.rootpath) / "pyproject.toml"
    if not pyproject.is_file():
        return {}
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    table = data.get("tool", {}).get("modelport", {})
    return table if isinstance(table, dict) else {}


def _configured_globs(config) -> list[str]:
    globs = list(config.getoption("--modelport-records") or [])
    configured = _settings(config).get("records", [])
    globs.extend([configured] if isinstance(configured, str) else configured)
    return globs


def _from(base: Path, spec: str) -> str:
    """A class spec whose file path is relative to ``base``, made absolute (module specs as they are)."""
    from convert import ClassSpec

    parsed = ClassSpec.parse(spec)
    if not parsed.is_file:
        return str(parsed)
    return str(parsed.with_where(str((base / Path(parsed.where).expanduser()).resolve())))


def model_class_for(config, record: Path) -> str | None:
    """The class the user names for ``record``: ``--modelport-model-class``, else the first
    ``[tool.modelport] model_classes`` glob that matches it; None when neither does."""
    given = config.getoption("--modelport-model-class")
    if given:
        return _from(Path(config.invocation_params.dir), given)
    root = Path(config.rootpath)
    table = _settings(config).get("model_classes") or {}
    for pattern, spec in (table.items() if isinstance(table, dict) else ()):
        if isinstance(spec, str) and record.resolve() in {p.resolve() for p in root.glob(pattern)}:
            return _from(root, spec)
    return None


def _record_paths(config) -> list[Path]:
    root = Path(config.rootpath)
    found: list[Path] = []
    for pattern in _configured_globs(config):
        matches = sorted(root.glob(pattern)) if not Path(pattern).is_absolute() else sorted(
            Path("/").glob(pattern.lstrip("/")))
        found.extend(p for p in matches if p.is_file() and p not in found)
    return found


class RecordMoved(Exception):
    def __init__(self, report):
        self.report = report
        super().__init__(report.reason or report.status)


class RecordFile(pytest.File):
    def collect(self):
        yield RecordItem.from_parent(self, name=self.path.name)


class RecordItem(pytest.Item):
    def runtest(self):
        from compat.records.model_class import RecordNamesCode
        from compat.records.replay import verify
        from convert.errors import BadInputError

        config = self.config
        try:
            report = verify(self.path, trust=config.getoption("--modelport-trust"),
                            reconvert=not config.getoption("--modelport-no-reconvert"),
                            model_class=model_class_for(config, self.path))
        except RecordNamesCode as exc:  # the same refusal, in this front end's words
            try:
                key = self.path.resolve().relative_to(Path(config.rootpath).resolve()).as_posix()
            except ValueError:  # a record outside the project
                key = str(self.path)
            raise BadInputError(exc.message, path=exc.path, hint=(
                f"name the class yourself: [tool.modelport] model_classes = {{\"{key}\" = "
                f"\"{exc.suggestion}\"}} or --modelport-model-class {exc.suggestion}; or pass --modelport-trust "
                "if you trust whoever wrote the record")) from None
        self.user_properties.append(("modelport_status", report.status))
        if not report.passed:
            raise RecordMoved(report)

    def repr_failure(self, excinfo, style=None):
        from convert.errors import ModelportError

        if isinstance(excinfo.value, RecordMoved):
            import io

            from rich.console import Console

            from compat.records.replay import render_text

            buf = io.StringIO()
            render_text(excinfo.value.report, Console(file=buf, width=110, no_color=True, highlight=False))
            return buf.getvalue()
        if isinstance(excinfo.value, ModelportError):
            return f"modelport: {excinfo.value.line()}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"modelport record {self.path.name}"


def pytest_collection_modifyitems(session, config, items):
    paths = _record_paths(config)
    for path in paths:
        file = RecordFile.from_parent(session, path=path)
        items.extend(file.collect())
