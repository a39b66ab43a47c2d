"""The persistence models each command runs without --model, pinned as documented: the
campaign (fuzz) every model; explore --server every simulated model but the POSIX minimum
(about 7 times the states; asked for by name, and each run says it was left out); the real
kernel's ext4, xfs and btrfs never by default (root, /dev/fuse and loop devices)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from faults import PersistenceModel
from harness.cli import build_parser, main
from harness.cli._common import ALL_MODELS
from harness.cli._explore_kernel import KERNEL_MODEL_CHOICES
from harness.cli._explore_server import DEFAULT_MODELS, _config

ROOT = Path(__file__).resolve().parent.parent


def test_all_models_is_every_persistence_model_in_its_order() -> None:
    assert tuple(m.value for m in PersistenceModel) == ALL_MODELS


def test_fuzz_without_model_crashes_under_every_persistence_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["fuzz", "--policy", "always", "--max-examples", "2", "--workers", "1",
                 "--database", "none", "--progress", "never", "--reports", str(tmp_path),
                 "--json"])
    assert code == 0
    report = json.loads(Path(json.loads(capsys.readouterr().out)["report"]).read_text())
    assert report["run"]["models"] == list(ALL_MODELS)


def test_explore_server_without_model_runs_every_simulated_model_but_the_posix_minimum(
) -> None:
    assert tuple(m for m in ALL_MODELS if m != "power-posix-metadata") == DEFAULT_MODELS
    args = build_parser().parse_args(["explore", "--server", "7.0"])
    assert _config(args).models == DEFAULT_MODELS
    assert not set(DEFAULT_MODELS) & set(KERNEL_MODEL_CHOICES)


def test_the_help_and_the_readme_name_the_defaults_that_run(
    capsys: pytest.CaptureFixture[str]
) -> None:
    for command in ("fuzz", "explore"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
    # (argparse wraps group descriptions at hyphens: "power-\n  ext4")
    text = re.sub(r"-\s+", "-", " ".join(capsys.readouterr().out.split()))
    assert "default: every model" in text
    assert ("--model process, power-ext4, power-xfs, power-btrfs and power-eager-metadata"
            in text)
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "over every fsync policy and persistence model" in readme
    assert ("Without `--model`, `explore --server` runs process, power-ext4, power-xfs, "
            "power-btrfs and power-eager-metadata" in readme)
