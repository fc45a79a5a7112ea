"""The long fault campaign: hundreds of kill points against one distribution, then the invariant.

    .venv/bin/python benchmarks/fault_campaign.py                       # 300 kill points, 2 × 1,500 members (~10 min)
    .venv/bin/python benchmarks/fault_campaign.py --kills 40 --members 500 --seed 7
    .venv/bin/python benchmarks/fault_campaign.py --max-attempts 3      # short outages exhaust attempts
    .venv/bin/python benchmarks/fault_campaign.py --campaigns 1         # one campaign, the default distribution

Real ``distributor run`` processes against a loopback sandbox (in this process, so its committed publications can
be read), each killed with SIGKILL at a random moment, stalled (SIGSTOP, a server answering after the client gave
up), cut off (the sandbox stopped and started again on the same port with its state), or served bursts of 5xx and
answers lost after commit; some are stopped with SIGTERM. By default the segment is distributed to two campaigns
under one ``--distribution`` name, each with its own CSV and journal, the rounds alternating at random. Then the same command is run again until it finishes,
and every member must hold exactly the code the sandbox committed for them, nothing more: one publication per
member, the CSV and the journal equal to the server's publications. The campaign is
:mod:`distributor.sandbox.faults`, the same as ``tests/test_fault_campaign.py`` (which plays 16 rounds).

Prints its figures (kill points, resumes, members, publications, calls per code, violations, wall time) and exits 1
when it finds any violation, keeping the campaign's folder (segment, journal, files, every run's output) to look at.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from distributor.sandbox.faults import (
    CAMPAIGN,
    OTHER_CAMPAIGN,
    CampaignConfig,
    FaultCampaign,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=300, help="rounds, each ending in a kill or SIGTERM (300)")
    parser.add_argument("--members", type=int, default=1500, help="members of the segment (1,500)")
    parser.add_argument("--campaigns", type=int, choices=(1, 2), default=2,
                        help="campaigns the segment is distributed to under one --distribution name (2)")
    parser.add_argument("--seed", type=int, default=1, help="the seed of every random choice (1)")
    parser.add_argument("--rate", default="300/s", help="the sandbox's limit and the job's budget (300/s)")
    parser.add_argument("--timeout", type=float, default=1.0, help="the job's --timeout in seconds (1)")
    parser.add_argument("--max-fault", type=float, default=4.0,
                        help="longest stall or outage, in seconds (4)")
    parser.add_argument("--max-attempts", type=int, default=None, help="the job's --max-attempts (its default, 8)")
    parser.add_argument("--strict-source-id", choices=("yes", "no", "seed"), default="seed",
                        help="every reused source_id answers duplicate_source_id (the look-up path); seed: the seed "
                             "decides")
    parser.add_argument("--keep", action="store_true", help="keep the campaign's folder even when all is well")
    parser.add_argument("--verbose", action="store_true", help="print every round's plan and outcome")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="fault-campaign-"))
    strict = {"yes": True, "no": False, "seed": None}[args.strict_source_id]
    campaign = FaultCampaign(CampaignConfig(
        seed=args.seed, workdir=folder, kills=args.kills, members=args.members, rate=args.rate,
        timeout=args.timeout, max_fault=args.max_fault, max_attempts=args.max_attempts, strict_source_id=strict,
        campaigns=(CAMPAIGN, OTHER_CAMPAIGN)[:args.campaigns],
    ))
    print(f"fault campaign: {args.kills} kill points, {args.members} members × {args.campaigns} campaigns, "
          f"seed {args.seed}, in {folder}", flush=True)
    report = campaign.run()
    text = report.describe()
    if not args.verbose:
        text = "\n".join(line for line in text.splitlines() if not line.startswith("  round "))
    print(text)
    if report.violations:
        print(f"{len(report.violations)} violations: the campaign's folder is kept in {folder}", file=sys.stderr)
        return 1
    if args.keep:
        print(f"the campaign's folder is kept in {folder}")
    else:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
