"""Where a run writes: checked before the segment is read or any call is made, so a bad path costs no quota.

A run writes its files beside ``output`` and its journal at ``journal_path``.  :func:`check_destinations` refuses,
with one line naming the path (:class:`ConfigError`, exit 2):

* a folder that cannot be made (a parent is a file, a missing folder under a read-only one) or written to — tried
  for real, with a probe file, because permission bits do not stop root;
* an output, journal or report that is the segment itself (the run would overwrite the export with its codes);
* an output folder another journal's distribution writes to (its summary names its journal): two journals writing
  the same files would silently replace each other's hand-off.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import tempfile
from pathlib import Path

from .config import JobConfig
from .errors import ConfigError


def check_destinations(config: JobConfig, *, probe: bool = True) -> None:
    """Refuse unusable destinations of ``config`` (see the module).  ``probe``: also make the folders and write a
    probe file in each (a run); without it nothing is created (``plan``)."""
    _refuse_overwriting_the_segment(config)
    for folder, what in ((config.output.parent, "output"), (config.journal_path.parent, "journal")):
        _check_folder(folder, what, probe=probe)
    _refuse_files_of_another_journal(config)


def written_files(config: JobConfig) -> list[Path]:
    """Every file a run writes: the output, its reports and the journal."""
    stem = config.output.stem
    reports = [config.output.with_name(f"{stem}.{suffix}") for suffix in (
        "manifest.json", "errors.csv", "skipped.csv", "summary.json", "new.csv", "left.csv",
    )]
    return [config.output, *reports, config.journal_path]


def _refuse_overwriting_the_segment(config: JobConfig) -> None:
    """No file a run writes may be a part of its segment: not a part itself, not inside a folder given as the
    segment, not matched by a glob given as one (the next run would read the codes as members)."""
    for part in config.segment:
        for path in written_files(config):
            if _is_part(path, part):
                raise ConfigError(
                    f"{path} is part of the segment {part}: the run would overwrite the export (or read its own "
                    "files as members next time); give another --output (or --state)"
                )


def _is_part(path: Path, part: Path) -> bool:
    if part.is_dir():
        return _real(path.parent) == _real(part)
    if not part.exists() and glob.has_magic(str(part)):
        return fnmatch.fnmatchcase(str(path.absolute()), str(part.absolute()))
    return _real(path) == _real(part)


def _check_folder(folder: Path, what: str, *, probe: bool) -> None:
    blocking = _first_non_folder(folder)
    if blocking is not None:
        raise ConfigError(f"{what} folder {folder} cannot be made: {blocking} is a file, not a folder")
    if not probe:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".distributor-probe-"):
            pass
    except OSError as error:
        raise ConfigError(f"{what} folder {folder} is not writable: {error.strerror or error}") from None


def _first_non_folder(folder: Path) -> Path | None:
    """The first existing ancestor of ``folder`` (itself included) that is not a folder, if any."""
    for candidate in (folder, *folder.parents):
        if os.path.lexists(candidate):
            return None if candidate.is_dir() else candidate
    return None


def _refuse_files_of_another_journal(config: JobConfig) -> None:
    """The summary a run leaves beside its output names its journal: another journal's files are not ours."""
    summary = config.summary_path
    try:
        owner = json.loads(summary.read_text(encoding="utf-8"))["run"]["journal"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # no summary (or not one of ours): nobody claims these files
    if not isinstance(owner, str) or not os.path.lexists(owner) or _same_file(Path(owner), config.journal_path):
        return  # ours, or its journal is gone: nobody else claims these files any more
    raise ConfigError(
        f"{config.output} belongs to the distribution of journal {owner} (see {summary}), not to {config.journal_path}: "
        "give this distribution its own --output, or the same --state as before"
    )


def _same_file(first: Path, second: Path) -> bool:
    try:
        return os.path.samefile(first, second)
    except OSError:
        return _real(first) == _real(second)


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))
