"""A seeded, randomized fault campaign (issue 9): real ``distributor run`` processes killed with SIGKILL at random
moments, stalled (SIGSTOP, a server answering after the client gave up), cut off (the sandbox stopped and started
again on the same port, with its state), served 5xx and answers lost after commit; then a final resume — and every
member must hold exactly the code Voucherify committed for them, nothing more.

The campaign itself lives in :mod:`distributor.sandbox.faults`, shared with ``benchmarks/fault_campaign.py`` (the
long version). Replay a failure with its seed: ``DISTRIBUTOR_FAULT_SEED=<seed> pytest tests/test_fault_campaign.py``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import httpx
import pytest

from distributor.sandbox import DEMO_APP_ID, DEMO_APP_TOKEN, SandboxServer
from distributor.sandbox.faults import CAMPAIGN, CampaignConfig, FaultCampaign

SEED = int(os.environ.get("DISTRIBUTOR_FAULT_SEED", "20261129"))


@pytest.mark.slow
def test_a_seeded_fault_campaign_leaves_every_member_exactly_the_code_voucherify_committed(tmp_path: Path) -> None:
    campaign = FaultCampaign(CampaignConfig(seed=SEED, workdir=tmp_path, kills=14, members=300, max_fault=4.0, max_attempts=3))

    report = campaign.run()

    print(report.describe())  # the seed, the figures and the plan played, shown by pytest on failure
    assert not report.violations, report.describe()
    assert report.final_exit == 0
    assert report.kill_points + report.sigterms >= 5, report.describe()  # the runs really were interrupted
    assert report.publications == 300 and report.lost_answers > 0 and report.server_errors > 0


def test_the_campaigns_check_catches_a_wrong_a_missing_an_unknown_and_a_second_code(tmp_path: Path) -> None:
    """The oracle is not vacuous: after a clean campaign, each way a member could be served wrong is reported."""
    campaign = FaultCampaign(CampaignConfig(seed=1, workdir=tmp_path, kills=0, members=12))
    assert campaign.run().violations == []

    first, second, third = campaign.members[:3]
    rows = _read_rows(campaign.output)
    rows = [[identity, "WRONG-CODE" if identity == first else code] for identity, code in rows if identity != second]
    _write_rows(campaign.output, rows + [["stranger", "REACT-STRANGER"]])
    with SandboxServer(campaign.sandbox) as server:  # a second publication for a member, under another source_id
        answer = httpx.post(
            f"{server.url}/v1/publications",
            headers={"X-App-Id": DEMO_APP_ID, "X-App-Token": DEMO_APP_TOKEN},
            json={"campaign": {"name": CAMPAIGN}, "customer": {"source_id": third}, "source_id": "another-id"},
        )
        assert answer.status_code == 200

    violations = campaign.check()

    assert any(f"gives {first} WRONG-CODE, the server committed" in v for v in violations), violations
    assert any(f"CSV codes.csv has no code for {second}" in v for v in violations), violations
    assert any("gives stranger REACT-STRANGER, which the server never committed" in v for v in violations)
    assert any(f"member {third} holds 2 codes on the server" in v for v in violations), violations
    assert "the server holds 13 publications for 12 members" in violations


def _read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))[1:]


def _write_rows(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["identity", "voucher_code"])
        writer.writerows(rows)
