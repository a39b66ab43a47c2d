"""The public names of harness and its public modules are exactly the intended ones."""

from __future__ import annotations

import importlib

import pytest

import harness

EXPECTED = {
    "ArmCrash", "BgRewrite", "Checker", "ChildStep", "ClearFaults", "ContractViolation", "Crash",
    "CrashInfo", "Driver", "History", "InjectFaults", "KillChild", "ModelDivergence", "Multi",
    "Outcome", "Read", "Recover", "ReproError", "Reproduction", "Rule", "RunConfig", "Snapshot",
    "Step", "Tick", "Verdict", "Violation", "Write", "check_recovery", "check_stability",
    "replay", "snapshot_from_dump",
}


def test_harness_exports_exactly_the_intended_names() -> None:
    assert set(harness.__all__) == EXPECTED
    for name in EXPECTED:
        assert getattr(harness, name) is not None


@pytest.mark.parametrize(
    "module",
    ["harness.oracle", "harness.machine", "harness.explore", "harness.verify", "harness.targets",
     "harness.cli", "harness.pytest_plugin"],
)
def test_public_modules_declare_all_and_every_name_in_it_exists(module: str) -> None:
    mod = importlib.import_module(module)
    names = mod.__all__
    assert names, f"{module} has an empty __all__"
    for name in names:
        assert hasattr(mod, name), f"{module}.__all__ names {name!r} but it is missing"
        assert not name.startswith("_") or name.isupper()


# The subpackages below re-export their owner modules' __all__ (star imports): their public
# names are pinned here so a name added to or dropped from a private module shows.
SUBPACKAGE_EXPECTED = {
    "harness.explore": {
        "CrashPoint", "DEFAULT_DAMAGE", "DEFAULT_SUITE", "ExploreLimits", "ExploreResult",
        "ExploreRunaway", "ExploreViolation", "ExplorerError", "StateRecord", "WORKLOADS",
        "Workload", "explore", "fit_workload", "make_workload", "suite_config",
        "workload_from_reproduction"
    },
    "harness.verify": {
        "Attribution", "Dumper", "FAULTS", "IMAGES", "INGREDIENTS", "Launcher", "MODELS",
        "OUTCOMES", "POLICIES", "REPRO_FORMAT", "SERVERS", "SERVER_EXPLORE_MODELS",
        "ServerExploreConfig", "ServerExploreError", "ServerExploreResult", "ServerViolation",
        "TrialResult", "Variant", "VerifyConfig", "VerifyEnvironmentError", "VerifyResult",
        "attribute_trial", "check_environment", "explore_server",
        "replay_server_reproduction", "run_trial", "run_verify", "verify_report",
        "worker_pool", "write_server_reproductions"
    },
    "harness.targets": {
        "APPENDFSYNC_POLICIES", "AofManifestEntry", "AofManifestError", "CommandProcess",
        "CommandShapes", "Dump", "DumpValue", "FORK_CHILD_TITLES", "Keyspace", "RedisProcess",
        "ReferenceProcess", "RewritingTarget", "SERVER_PRESETS", "SERVER_TEMPLATE_FIELDS",
        "SERVER_VERSIONS", "ServerBinary", "ServerInfo", "ServerNotFound", "ServerNotUsable",
        "ServerRefusedToStart", "ServerSpec", "ServerSpecError", "ServerStartTimeout",
        "Target", "TargetConfig", "TargetEnv", "TargetError", "TargetFactory",
        "TargetRefusedToStart", "TargetSource", "accepts_of", "aof_manifest_path",
        "aof_paths", "as_rewriting", "check_target", "dump_keyspace", "dump_keyspace_at",
        "find_aof_files", "find_server", "load_target_factory", "make_importable",
        "make_run_dir", "parse_manifest", "probe_server", "reference_target",
        "remove_stale_run_dirs", "resolve_server", "run_dir_base", "shapes_of",
        "target_checksummed", "target_files", "target_source"
    },
}


@pytest.mark.parametrize("module", sorted(SUBPACKAGE_EXPECTED))
def test_subpackages_export_exactly_their_intended_names_once(module: str) -> None:
    mod = importlib.import_module(module)
    assert set(mod.__all__) == SUBPACKAGE_EXPECTED[module]
    assert len(mod.__all__) == len(set(mod.__all__))
