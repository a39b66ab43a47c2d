"""reference.__all__ is exactly the public surface, and every name is importable."""

from __future__ import annotations

import importlib

import reference

EXPECTED = {
    "HIREDIS_AVAILABLE", "AofLoader", "AppendFsync", "CheckResult", "ConfigError", "ErrorReply",
    "KeyspaceDump", "LoadError", "LoadResult", "Profile", "Reply", "ReplyNotReleased",
    "RespFormatError", "RewriteChild", "Server", "ServerConfig", "SimpleString", "check_aof",
    "defects", "encode_command", "encode_reply", "fix_aof", "parse_command",
}


def test_all_is_exactly_the_public_names() -> None:
    assert set(reference.__all__) == EXPECTED
    for name in reference.__all__:
        assert hasattr(reference, name), name


def test_defects_module_exports_its_names() -> None:
    module = importlib.import_module("reference.defects")
    for name in module.__all__:
        assert hasattr(module, name)
    constants = {getattr(module, n) for n in module.__all__ if n.isupper() and n != "DEFECTS"}
    assert set(module.DEFECTS) == constants


def test_reference_imports_only_the_filesystem_protocol_and_clock_from_faults() -> None:
    import pathlib

    root = pathlib.Path(reference.__file__).parent
    for path in root.glob("*.py"):
        text = path.read_text()
        for line in text.splitlines():
            if line.startswith(("from faults", "import faults")):
                allowed = {"from faults import Clock, FileSystem"}
                if path.name == "_net.py":  # python -m reference serves a real directory
                    allowed.add("from faults import Clock, OSFileSystem")
                assert line.strip() in allowed, (path, line)
            assert not line.startswith(("from harness", "import harness")), path
