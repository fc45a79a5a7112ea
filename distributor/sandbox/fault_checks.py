"""What a fault campaign (:mod:`.faults`) found: its :class:`CampaignReport`, and the invariant it checks once the
last run has finished — every member holds exactly the code Voucherify committed for them, nothing more — for one
distribution (one campaign's CSV and journal against the server's publications of that campaign)."""

from __future__ import annotations

import collections
import csv
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..journal import Journal

_SHOWN_VIOLATIONS = 30
_EXAMPLES = 3


@dataclass
class CampaignReport:
    seed: int
    members: int
    campaigns: tuple[str, ...]
    strict_source_id: bool
    kill_points: int = 0
    sigterms: int = 0
    resumes: int = 0
    faults: collections.Counter[str] = field(default_factory=collections.Counter)
    exit_codes: collections.Counter[str] = field(default_factory=collections.Counter)
    publications: int = 0
    requests: int = 0
    lost_answers: int = 0
    server_errors: int = 0
    rate_limited: int = 0
    final_exit: int | None = None
    wall_seconds: float = 0.0
    log: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    @property
    def calls_per_code(self) -> float:
        return self.requests / self.publications if self.publications else 0.0

    def describe(self) -> str:
        """Every figure, then the plan that was played and each violation: enough to replay and investigate."""
        lines = [
            (f"fault campaign seed {self.seed}: {self.kill_points} kill points (SIGKILL), {self.sigterms} SIGTERMs, "
             f"{self.resumes} resumes, {self.members} members × {len(self.campaigns)} campaigns "
             f"({', '.join(self.campaigns)}), {'strict' if self.strict_source_id else 'idempotent'} source_id"),
            f"  faults        {dict(sorted(self.faults.items()))}",
            f"  exit codes    {dict(sorted(self.exit_codes.items()))}; final run exit {self.final_exit}",
            (f"  server        {self.publications} publications, {self.requests} requests "
             f"({self.calls_per_code:.3f} per code), {self.lost_answers} answers lost after commit, "
             f"{self.server_errors} 5xx, {self.rate_limited} 429"),
            f"  violations    {len(self.violations)}",
            f"  wall time     {self.wall_seconds:.1f} s",
        ]
        lines += [f"  round {line}" for line in self.log]
        lines += [f"  VIOLATION {violation}" for violation in self.violations[:_SHOWN_VIOLATIONS]]
        if len(self.violations) > _SHOWN_VIOLATIONS:
            lines.append(f"  … and {len(self.violations) - _SHOWN_VIOLATIONS} more violations")
        return "\n".join(lines)


def distribution_violations(
    campaign: str, held: Mapping[str, Collection[str]], members: Sequence[str], output: Path, journal_path: Path
) -> list[str]:
    """What is not so of one distribution: the server's publications of ``campaign`` (``held``: customer → codes)
    one per member, the CSV ``output`` and the journal equal to them."""
    member_set = set(members)
    where = f"{campaign}: the server"
    violations = _listed(f"{where} published to {{n}} customers who are not members", sorted(set(held) - member_set))
    committed = {identity: next(iter(codes)) for identity, codes in held.items()
                 if identity in member_set and len(codes) == 1}
    violations += _listed(f"{where} holds no code for {{n}} members",
                          [identity for identity in members if identity not in held])
    violations += _listed(f"{where} holds several codes for {{n}} members",
                          [f"{identity}: {sorted(codes)}" for identity, codes in held.items() if len(codes) > 1])
    violations += _csv_problems(output)
    violations += _compare(f"{campaign}: the CSV {output.name}", _csv_codes(output), committed)
    with Journal.open(journal_path, readonly=True) as journal:
        violations += _compare(f"{campaign}: the journal", dict(journal.codes()), committed)
        violations += _journal_states(campaign, journal)
    return violations


def _compare(where: str, saved: dict[str, str], committed: dict[str, str]) -> list[str]:
    """Differences between the codes ``where`` holds and the ones the server committed (member → code)."""
    return (
        _listed(f"{where} has no code for {{n}} members the server committed a code to",
                [f"{identity} (server: {code})" for identity, code in committed.items() if identity not in saved])
        + _listed(f"{where} gives {{n}} members another code than the server committed",
                  [f"{identity}: {code} (server: {committed[identity]})" for identity, code in saved.items()
                   if identity in committed and committed[identity] != code])
        + _listed(f"{where} gives {{n}} members a code the server never committed to them",
                  [f"{identity}: {code}" for identity, code in saved.items() if identity not in committed])
    )


def _listed(what: str, examples: list[str]) -> list[str]:
    """One violation naming how many (``{n}`` in ``what``) and the first few, or none when ``examples`` is empty."""
    if not examples:
        return []
    more = f", … {len(examples) - _EXAMPLES} more" if len(examples) > _EXAMPLES else ""
    return [f"{what.format(n=len(examples))}: {', '.join(examples[:_EXAMPLES])}{more}"]


def _csv_rows(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))[1:]


def _csv_problems(path: Path) -> list[str]:
    if not path.exists():
        return [f"no {path.name} after the final resume"]
    rows = _csv_rows(path)
    if len({row[0] for row in rows}) != len(rows):
        return [f"{path.name} lists a member twice ({len(rows)} rows)"]
    return []


def _csv_codes(path: Path) -> dict[str, str]:
    return {row[0]: row[1] for row in _csv_rows(path)}


def _journal_states(campaign: str, journal: Journal) -> list[str]:
    """Members the journal does not hold as ``done`` — this campaign has only transient faults: all are errors."""
    problems = [f"{campaign}: the journal holds {count} {state} members"
                for state, count in journal.state_counts().items() if state != "done" and count]
    failures = [f"{failure.identity} ({failure.key}: {failure.message})" for failure in journal.failures()]
    return problems + _listed(f"{campaign}: {{n}} members failed", failures)
