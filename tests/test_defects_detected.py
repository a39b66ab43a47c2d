"""Every named defect of reference.defects is found by the state machines, and replays.

Each defect gets the configuration that exercises it (the fsync policy where it acts; every
persistence model, swarm features drawn per run). A fixed seed and a bounded budget make each
case deterministic: the campaign runs slices with seeds 0, 1, 2, ... until the first violation.
"""

from __future__ import annotations

import pytest

from harness.machine._campaign import DEFECT_CONFIGS as CONFIG
from harness.machine._campaign import Campaign, run_campaign
from harness.machine._driver import ContractViolation, replay
from harness.machine._steps import RunConfig
from reference.defects import DEFECTS

BUDGET_S = 120.0  # a ceiling: each case is found at a fixed slice, typically in 5-45 s


def test_every_defect_has_a_detecting_configuration() -> None:
    assert set(CONFIG) == set(DEFECTS)


@pytest.mark.slow
@pytest.mark.parametrize("defect", sorted(CONFIG))
def test_the_state_machines_find_the_defect_and_its_reproduction_replays(defect: str) -> None:
    policy, strict = CONFIG[defect]
    config = RunConfig(policy=policy, defects=frozenset([defect]), strict_availability=strict)
    result = run_campaign(Campaign(configs=(config,), settings_profile="dev", budget_s=BUDGET_S,
                                   seed=0, shrink_budget_s=5.0))
    assert result.findings, f"{defect} not found in {result.examples} examples"
    finding = result.findings[0]
    assert finding.kind == "violation", finding.text
    assert finding.reproduction is not None
    with pytest.raises(ContractViolation) as info:
        replay(finding.reproduction)
    assert sorted({v.rule.value for v in info.value.verdict.violations}) == finding.rules
