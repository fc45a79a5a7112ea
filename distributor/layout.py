"""Every file a distribution keeps beside its output, named in one place.

A distribution's files are all named after its output CSV (``<dir>/<name>.csv``)::

    <name>.csv                         every code held (the full hand-off)
    <name>.manifest.json               how CleverTap reads the CSVs
    <name>.errors.csv                  members Voucherify refused
    <name>.skipped.csv                 rows of the segment that were not members
    <name>.summary.json                how the latest run ended, and what to do next
    <name>.left.csv                    members of earlier runs absent from the latest segment
    <name>.new.<YYYY-MM-DD>.run<N>.csv run N's delta: the codes to upload after it
    <name>.journal.sqlite              the journal (unless ``state`` names another file)
    <name>.push-errors.csv             what CleverTap refused (push)
    <name>.calls.csv                   every API call (``distributor export --calls``)
    <name>.verify.csv                  verify's report
    <name>.audience-<YYYY-MM-DD>.jsonl the day's audience read from CleverTap's profiles API

:class:`Layout` derives them from the output and the optional state path only: it reads no configuration, so a
command that only reads a distribution's files (status, export, verify) needs nothing more to find them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

#: The journal's name beside the output: ``<name>.journal.sqlite``.
JOURNAL_SUFFIX = ".journal.sqlite"


@dataclass(frozen=True)
class Layout:
    """The paths of one distribution's files: ``output`` (its codes CSV) and ``state`` (the journal, if not the
    default beside the output)."""

    output: Path
    state: Path | None = None

    def _beside(self, suffix: str) -> Path:
        return self.output.with_name(self.output.stem + suffix)

    @property
    def codes(self) -> Path:
        return self.output

    @property
    def journal(self) -> Path:
        return self.state or self._beside(JOURNAL_SUFFIX)

    @property
    def manifest(self) -> Path:
        return self._beside(".manifest.json")

    @property
    def errors(self) -> Path:
        return self._beside(".errors.csv")

    @property
    def skipped(self) -> Path:
        return self._beside(".skipped.csv")

    @property
    def summary(self) -> Path:
        return self._beside(".summary.json")

    @property
    def left(self) -> Path:
        return self._beside(".left.csv")

    @property
    def push_errors(self) -> Path:
        return self._beside(".push-errors.csv")

    @property
    def calls(self) -> Path:
        return self._beside(".calls.csv")

    @property
    def verify_report(self) -> Path:
        return self._beside(".verify.csv")

    def delta(self, run_id: int, started_at: float) -> Path:
        """``<name>.new.<YYYY-MM-DD>.run<N>.csv``: run ``run_id``'s delta, dated by its UTC start."""
        day = datetime.fromtimestamp(started_at, UTC).strftime("%Y-%m-%d")
        return self._beside(f".new.{day}.run{run_id}.csv")

    def audience(self, day: date | None = None) -> Path:
        """``--clevertap-query``: where the day's audience is paged to (it then is the segment)."""
        return self._beside(f".audience-{(day or date.today()).isoformat()}.jsonl")

    def written(self) -> list[Path]:
        """The files a run writes whose names do not depend on the run: the output, its reports, the journal.
        (A glob-shaped segment may match the delta files, which are refused by name pattern elsewhere.)"""
        reports = [self.manifest, self.errors, self.skipped, self.summary, self._beside(".new.csv"), self.left]
        return [self.output, *reports, self.journal]

    @classmethod
    def of_journal(cls, state: Path) -> Layout | None:
        """The layout of a journal kept at its default place (``<name>.journal.sqlite`` beside ``<name>.csv``);
        ``None`` when its name does not say where the output is."""
        if not state.name.endswith(JOURNAL_SUFFIX):
            return None
        return cls(output=state.with_name(state.name.removesuffix(JOURNAL_SUFFIX) + ".csv"), state=state)
