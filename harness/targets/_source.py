"""Where an in-process target's module was imported from, so that its reproductions replay
from any directory without PYTHONPATH.

A reproduction names its target as ``MODULE:FACTORY``; the module is often the user's own
project (``tinyaof``), importable only from the directory the run started in. ``TargetSource``
records the top-level module and the directory that holds it, relative to the project root (the
pytest rootdir, or the directory ``aofcrash fuzz`` ran in) and as an absolute path.
``make_importable`` finds that directory again: relative to the reproduction file and each of
its parent directories (a reproduction copied into ``tests/regressions/`` of the same project),
relative to the given roots (pytest's rootdir, the current directory), else the absolute path
recorded; the first that holds the module is appended to ``sys.path`` (appended: it shadows
nothing installed). Modules that are installed (site-packages) or aofcrash's own need nothing.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = ["TargetSource", "make_importable", "target_source"]

# aofcrash's own packages: importable wherever aofcrash is.
_OWN = frozenset({"faults", "reference", "harness"})


@dataclass(frozen=True)
class TargetSource:
    """The top-level `module` of a target's ``MODULE:FACTORY`` and the directory holding it:
    `path` relative to the project root (POSIX; absolute when outside it) and `directory`, the
    absolute path where it was recorded (the last resort)."""

    module: str
    path: str
    directory: str

    def __post_init__(self) -> None:
        errors = []
        if not self.module.isidentifier():
            errors.append(f"module must be a module name, got {self.module!r}")
        if not self.path:
            errors.append("path must not be empty")
        if not os.path.isabs(self.directory):
            errors.append(f"directory must be absolute, got {self.directory!r}")
        if errors:
            raise ValueError("target_source: " + "; ".join(errors))

    def to_dict(self) -> dict[str, str]:
        return {"module": self.module, "path": self.path, "directory": self.directory}

    @classmethod
    def from_dict(cls, data: Any) -> TargetSource:
        if not isinstance(data, dict):
            raise ValueError("target_source: expected an object")
        wrong = [k for k in ("module", "path", "directory") if not isinstance(data.get(k), str)]
        if wrong:
            raise ValueError(f"target_source: {', '.join(wrong)} must be strings")
        return cls(module=data["module"], path=data["path"], directory=data["directory"])


def _installed(directory: Path) -> bool:
    paths = sysconfig.get_paths()
    for key in ("purelib", "platlib", "stdlib", "platstdlib"):
        where = paths.get(key)
        if where and directory == Path(where).resolve():
            return True
    return directory.name in ("site-packages", "dist-packages")


def target_source(spec: str | None, *, root: Path) -> TargetSource | None:
    """Where `spec`'s module was imported from (it must be imported already, as it is once a
    run has built the target), relative to `root`; None for the bundled reference, aofcrash's
    own modules, installed ones and modules with no file."""
    if not spec or ":" not in spec:
        return None
    top = spec.partition(":")[0].split(".")[0]
    module = sys.modules.get(top)
    if top in _OWN or module is None:
        return None
    file = getattr(module, "__file__", None)
    if file is not None:
        where = Path(file).resolve().parent
        if Path(file).name == "__init__.py":
            where = where.parent  # a package: the directory that holds it
    else:  # a namespace package
        locations = list(getattr(module, "__path__", []))
        if not locations:
            return None
        where = Path(locations[0]).resolve().parent
    if _installed(where):
        return None
    base = root.resolve()
    try:
        path = PurePosixPath(where.relative_to(base)).as_posix()
    except ValueError:
        path = where.as_posix()
    return TargetSource(module=top, path=path, directory=str(where))


def _holds(directory: Path, module: str) -> bool:
    return (directory / module / "__init__.py").is_file() or (
        directory / f"{module}.py").is_file() or (directory / module).is_dir()


def _candidates(source: TargetSource, near: Sequence[Path]) -> Iterable[Path]:
    relative = Path(source.path)
    if relative.is_absolute():
        yield relative
    else:
        for start in near:
            start = start.resolve()
            for base in (start, *start.parents):
                yield base / relative
    yield Path(source.directory)


def make_importable(source: TargetSource | None, *, near: Sequence[Path]) -> Path | None:
    """Append the directory that holds `source`'s module to ``sys.path`` when the module is not
    importable already; `near`: where to look for the project (the reproduction file's
    directory first, then e.g. pytest's rootdir or the current directory), each with its
    parents. The directory used, or None (nothing to do, or not found: the import then fails
    with its own message)."""
    if source is None or importlib.util.find_spec(source.module) is not None:
        return None
    for directory in _candidates(source, near):
        if _holds(directory, source.module):
            entry = str(directory)
            if entry not in sys.path:
                sys.path.append(entry)
            importlib.invalidate_caches()
            return directory
    return None
