"""Telling that a segment export is the very one a journal has loaded already, without reading it.

A rerun of a distribution (a resume after a crash, the next day of a multi-day run) usually reads the same export
again: a 10M-row file takes two minutes to read and re-record.  :func:`export_fingerprint` names an export by what
changes whenever its content can have changed, for every part, in order:

* its real path, device and inode: another file (a new export written beside, or over it by rename) differs;
* its size, ``st_mtime_ns`` and ``st_ctime_ns``: any write changes them.  ``ctime`` cannot be set by a user (``touch
  -d`` and ``os.utime`` set mtime, and then the kernel sets ctime to now), so an edit in place that keeps the size
  and puts the old mtime back is still seen.  Touching a file, a chmod or a rename also change them: the export is
  then read whole, which is only slower;
* a BLAKE2b digest of its first and last MiB and its size: for filesystems whose timestamps are coarse (FAT: 2 s)
  and for a file replaced by another of the same size that reuses the inode within one timestamp tick — another
  export differs in its header and first rows or in its last rows;
* how it is read (``reading``: format, delimiter, identity column and key), so another identity column is another
  segment.

The fingerprint is taken before the export is read (the reader opens each part by its path afterwards), and
recorded only once it has been read whole: a file changed or replaced at any time after that moment has another
fingerprint at the next run, which then reads it whole.

Cost: one ``fstat`` and 2 MiB read per part, milliseconds on any export.  A full digest would read the whole file
(seconds per GB) to guard only against a same-size edit of the middle rows that keeps inode, mtime *and* ctime,
which the kernel does not allow short of changing the clock.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

_SAMPLE = 1 << 20  # bytes digested at each end of a part


def export_fingerprint(parts: Sequence[Path], *, reading: str = "") -> str:
    """The fingerprint of the export made of ``parts`` (in reading order), read as ``reading`` says.  Raises
    :class:`OSError` when a part cannot be read (the caller then reads the export, and reports why it cannot)."""
    described: list[object] = [reading]
    for part in parts:
        real = os.path.realpath(part)
        with open(real, "rb") as handle:
            info = os.fstat(handle.fileno())
            digest = hashlib.blake2b(digest_size=16)
            digest.update(handle.read(_SAMPLE))
            if info.st_size > _SAMPLE:
                handle.seek(max(_SAMPLE, info.st_size - _SAMPLE))
                digest.update(handle.read(_SAMPLE))
            described.append(
                [real, info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns, digest.hexdigest()]
            )
    return hashlib.sha256(json.dumps(described).encode()).hexdigest()
