"""pytest plugin: each golden record a project lists becomes a test item.

    # pyproject.toml of the project
    [tool.modelport]
    records = ["models/*.mprec"]

or ``pytest --modelport-records 'models/*.mprec'``. Registered through the ``pytest11`` entry point, so
a plain ``pytest -q`` picks it up wherever modelport is installed. Inert when no records are configured;
imports nothing heavy until a record item runs.
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


def _configured_globs(config) -> list[str]:
    globs = list(config.getoption("--modelport-records") or [])
    pyproject = Path(config.rootpath) / "pyproject.toml"
    if pyproject.is_file():
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        configured = data.get("tool", {}).get("modelport", {}).get("records", [])
        globs.extend([configured] if isinstance(configured, str) else configured)
    return globs


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
        from compat.replay import verify

        config = self.config
        report = verify(self.path, trust=config.getoption("--modelport-trust"),
                        reconvert=not config.getoption("--modelport-no-reconvert"))
        self.user_properties.append(("modelport_status", report.status))
        if not report.passed:
            raise RecordMoved(report)

    def repr_failure(self, excinfo, style=None):
        from convert.errors import ModelportError

        if isinstance(excinfo.value, RecordMoved):
            import io

            from rich.console import Console

            from compat.replay import render_text

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
