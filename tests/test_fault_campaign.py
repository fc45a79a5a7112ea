"""A seeded, randomized fault campaign (issue 9): real ``distributor run`` processes killed with SIGKILL at random
moments, stalled (SIGSTOP, a server answering after the client gave up), cut off (the sandbox stopped and started
again on the same port, with its state), served 5xx and answers lost after commit; then a final resume — and every
member must hold exactly the code Voucherify committed for them, nothing more.

On the code of main before issue 9's fixes this campaign fails twice over: members left ``failed`` after their
three attempts met an outage (some of them holding a code the server committed: absent from the CSV), and the
second campaign's CSV holding the first campaign's codes (one ``--distribution`` for two campaigns).

The campaign itself lives in :mod:`distributor.sandbox.faults`, shared with ``benchmarks/fault_campaign.py`` (the
long version). Replay a failure with its seed: ``DISTRIBUTOR_FAULT_SEED=<seed> pytest tests/test_fault_campaign.py``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import httpx
import pytest

from distributor.sandbox import (
    DEMO_APP_ID,
    DEMO_APP_TOKEN,
    SandboxConfig,
    SandboxServer,
)
from distributor.sandbox.faults import (
    CAMPAIGN,
    OTHER_CAMPAIGN,
    CampaignConfig,
    FaultCampaign,
)

SEED = int(os.environ.get("DISTRIBUTOR_FAULT_SEED", "20261129"))


@pytest.mark.slow(seconds=15)
def test_a_seeded_fault_campaign_leaves_every_member_the_code_the_server_committed(tmp_path: Path) -> None:
    """Two campaigns share one distribution name (a code of one must never be saved for the other); three attempts
    per member, so that a short outage or stall exhausts them (transient failures must never become final)."""
    # 8 rounds: each of the seven fault kinds at least once. Sized for CI, yet on the code before issue 9's fixes
    # (8200d76^) this seed fails on both counts every time it was tried (4 of 4: members left failed, codes of one
    # campaign saved for the other); 7 rounds or 120 members × 1 campaign at 7 rounds did not. The long version
    # (hundreds of kill points, any seed) is benchmarks/fault_campaign.py.
    config = CampaignConfig(seed=SEED, workdir=tmp_path, kills=8, members=120, max_fault=3.0, max_attempts=3,
                            campaigns=(CAMPAIGN, OTHER_CAMPAIGN))

    report = FaultCampaign(config).run()

    print(report.describe())  # the seed, the figures and the plan played, shown by pytest on failure
    assert not report.violations, report.describe()
    assert report.final_exit == 0
    assert report.kill_points + report.sigterms >= 6, report.describe()  # the runs really were interrupted
    assert report.publications == 240 and report.lost_answers > 0 and report.server_errors > 0


@pytest.mark.slow
def test_the_campaigns_check_catches_a_wrong_a_missing_an_unknown_and_a_second_code(tmp_path: Path) -> None:
    """The oracle is not vacuous: after a clean campaign, each way a member could be served wrong is reported."""
    campaign = FaultCampaign(CampaignConfig(seed=1, workdir=tmp_path, kills=0, members=12))
    assert campaign.run().violations == []

    first, second, third = campaign.members[:3]
    output = campaign.targets[0].output
    rows = _read_rows(output)
    rows = [[identity, "WRONG-CODE" if identity == first else code] for identity, code in rows if identity != second]
    _write_rows(output, [*rows, ["stranger", "REACT-STRANGER"]])
    with SandboxServer(campaign.sandbox) as server:  # a second publication for a member, under another source_id
        answer = httpx.post(
            f"{server.url}/v1/publications",
            headers={"X-App-Id": DEMO_APP_ID, "X-App-Token": DEMO_APP_TOKEN},
            json={"campaign": {"name": CAMPAIGN}, "customer": {"source_id": third}, "source_id": "another-id"},
        )
        assert answer.status_code == 200

    violations = campaign.check()

    csv_file = f"{CAMPAIGN}: the CSV {CAMPAIGN}.csv"
    assert_reported(violations, csv_file, "gives 1 members another code than the server", f"{first}: WRONG-CODE")
    assert_reported(violations, csv_file, "has no code for 1 members the server committed a code to", second)
    assert_reported(violations, csv_file, "a code the server never committed to them", "stranger: REACT-STRANGER")
    assert_reported(violations, f"{CAMPAIGN}: the server holds several codes for 1 members: {third}")
    assert_reported(violations, "the server holds 13 publications, not 12")


def test_the_sandbox_comes_back_on_the_same_port_with_its_publications_after_an_outage() -> None:
    """The campaign's outage: connections refused, then the same Voucherify again (the port in TIME_WAIT)."""
    headers = {"X-App-Id": DEMO_APP_ID, "X-App-Token": DEMO_APP_TOKEN}
    request = {"campaign": {"name": CAMPAIGN}, "customer": {"source_id": "c-1"}, "source_id": "pub-c-1"}
    first = SandboxServer(SandboxConfig(seed=1)).start()
    with httpx.Client(headers=headers) as client:
        code = client.post(f"{first.url}/v1/publications", json=request).json()["voucher"]["code"]
        first.stop()  # the server closes the kept-alive connection first: its side waits in TIME_WAIT
        with pytest.raises(httpx.ConnectError):
            client.post(f"{first.url}/v1/publications", json=request)

        with SandboxServer(first.sandbox, port=first.port) as again:
            replayed = client.post(f"{again.url}/v1/publications", json=request)

    assert again.port == first.port
    assert replayed.status_code == 200 and replayed.json()["voucher"]["code"] == code
    assert len(again.sandbox.publications) == 1


def assert_reported(violations: list[str], *parts: str) -> None:
    assert any(all(part in violation for part in parts) for violation in violations), (parts, violations)


def _read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))[1:]


def _write_rows(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["identity", "voucher_code"])
        writer.writerows(rows)
