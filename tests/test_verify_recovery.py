"""Recovering a crash image with the real binary: a start that lost its port to another
recovery is redone on a fresh copy of the image, never reported as the server's refusal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.verify import _recovery
from harness.verify._recovery import _lost_port, _Recovered


class _Exited:
    def __init__(self, log: Path, *, running: bool = False) -> None:
        self.log_path = str(log)
        self.running = running


def test_a_server_that_exited_because_its_address_was_taken_lost_its_port(
        tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("# Warning: Could not create server TCP listening socket *:6379: bind: "
                   "Address already in use\n")
    assert _lost_port(_Exited(log))


def test_a_server_still_running_or_exiting_for_another_reason_did_not(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("# Bad file format reading the append only file\n")
    assert not _lost_port(_Exited(log))
    log.write_text("bind: Address already in use\n")
    assert not _lost_port(_Exited(log, running=True))
    assert not _lost_port(_Exited(tmp_path / "missing"))


def test_a_recovery_whose_start_lost_its_port_is_redone_on_a_fresh_copy(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bool] = []
    roots: list[str] = []

    def once(*args: Any, last: bool) -> _Recovered | None:
        calls.append(last)
        roots.append(args[-1])
        if len(calls) == 1:
            return None  # lost its port
        return _Recovered("d", {"k": 1}, None, 5, None, (), 0.0)

    monkeypatch.setattr(_recovery, "_recover_once", once)
    got = _recovery._recover(None, "always", {}, 0.0, "d", {}, (), False)  # type: ignore[arg-type]
    assert (got.dump, got.reason) == ({"k": 1}, None)
    assert calls == [False, False] and len(set(roots)) == 2
    assert not any(Path(r).exists() for r in roots)  # each scratch copy removed
