"""The CleverTap files, rewritten from the journal: after every run, and on demand (``distributor export``).

The journal is the source of truth; these files are views of it, so they can be rewritten at any time — also
while a run is going (the journal is read in a consistent snapshot).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import outputs
from .config import JobConfig
from .journal import Journal


@dataclass(frozen=True)
class Exported:
    files: dict[str, Path]
    codes: int
    errors: int
    skipped: int


def export_files(config: JobConfig, journal: Journal, *, run_id: int, key: str) -> Exported:
    """Write the codes CSV, the manifest, the errors report and run ``run_id``'s skipped-rows report."""
    codes = outputs.write_codes(config.output, journal.codes(), key=key, property=config.property_name)
    outputs.write_manifest(config.manifest_path, key=key, property=config.property_name)
    errors = outputs.write_errors(config.errors_path, journal.failures(), key=key)
    skipped = outputs.write_skipped(config.skipped_path, journal.skipped(run_id))
    files = {
        "codes": config.output,
        "manifest": config.manifest_path,
        "errors": config.errors_path,
        "skipped": config.skipped_path,
    }
    return Exported(files, codes, errors, skipped)
