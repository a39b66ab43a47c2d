"""reference.__all__ is exactly the public surface, and every name is importable."""

from __future__ import annotations

import importlib

import reference

EXPECTED = {
    "HIREDIS_AVAILABLE", "AofLoader", "AppendFsync", "CheckResult", "ConfigError", "ErrorReply",
    "KeyspaceDump", "LoadError", "LoadResult", "Profile", "Reply", "ReplyNotReleased",
    "RespFormatError", "RewriteChild", "Server", "ServerConfig", "SimpleString", "check_aof",
    "defects", "encode_command", "encode_reply", "fix_aof", "parse_command",
    # check-aof for Redis 7.x multi-part AOFs and RDB preambles
    "AofCheck", "AofInputError", "AofNotFixableError", "FileCheck", "FixPlan", "RdbCheckResult",
    "check_aof_path", "check_rdb", "plan_fix",
    # the canonical dump form of one value (Keyspace.dump per key)
    "dump_value",
    # the loader's own parser (annotations, atoi-style headers), for the explorer
    "parse_aof_command",
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


def test_dump_value_gives_the_canonical_form_keyspace_dump_uses() -> None:
    from collections import deque

    from reference._keyspace import Hash, Keyspace, Value, ZSet

    values: list[Value] = [b"s", deque([b"a", b"b"]), {b"m"}, ZSet({b"z": 1.5}), Hash({b"f": b"v"})]
    assert [reference.dump_value(v) for v in values] == [
        b"s", [b"a", b"b"], {b"m"}, {b"z": 1.5}, {b"f": b"v"}]
    assert type(reference.dump_value(ZSet({b"z": 1.0}))) is dict  # a copy, not the ZSet itself
    ks = Keyspace()
    ks.dbs[0].data[b"k"] = values[1]
    assert ks.dump(0) == {0: {b"k": ("list", reference.dump_value(values[1]), None)}}
