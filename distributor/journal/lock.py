"""One process at a time on a journal: ``flock``s the kernel releases when the process ends, however it ends.

A run takes two exclusive locks (:func:`take_locks`): on ``<journal>.lock`` beside the journal's *real* file
(symlinks and ``..`` resolved; it holds a note naming the holder), and on the journal file itself, which a hard
link under another name shares too.  :func:`holder` tells, without taking anything, who holds them.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

from ..errors import JournalLocked


def lock_path(journal: Path) -> Path:
    """``<journal>.lock`` beside the journal's real file: every name of the journal finds the same lock."""
    real = Path(os.path.realpath(journal))
    return real.with_name(real.name + ".lock")


def take_locks(path: Path) -> list[int]:
    """Exclusive locks on the journal at ``path`` for this process, or :class:`JournalLocked` naming the holder.
    Returns the descriptors, for :func:`release`."""
    real = Path(os.path.realpath(path))
    note = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o644)
    if not _try_flock(note):
        holder = os.pread(note, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(note)
        raise _in_use(path, holder)
    try:
        journal = os.open(real, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError:
        os.close(note)
        raise
    if not _try_flock(journal):
        release([journal, note])
        raise _in_use(path, "another process (through another name of the same file)")
    os.ftruncate(note, 0)
    since = time.strftime("%Y-%m-%d %H:%M:%S")
    os.pwrite(note, f"pid {os.getpid()} on {socket.gethostname()} since {since}".encode(), 0)
    return [note, journal]


def release(handles: list[int]) -> None:
    for handle in handles:
        os.close(handle)  # closing the descriptor releases its flock


def holder(note: Path) -> str | None:
    """The holder's note in the lock file ``note`` while its ``flock`` is held, else ``None``.

    A shared lock is tried without waiting and released at once: it fails exactly while a run holds its lock (a run
    in progress is never made to wait or fail).  Never creates the lock file.
    """
    try:
        handle = os.open(note, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(handle, 200, 0).decode(errors="replace").strip() or "another process"
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None
    finally:
        os.close(handle)


def _in_use(path: Path, holder: str) -> JournalLocked:
    return JournalLocked(
        f"journal {path} is in use by {holder}: another run of this distribution is still going; "
        "wait for it to end (or stop it), then run again"
    )


def _try_flock(handle: int) -> bool:
    """An exclusive ``flock`` on ``handle`` without waiting: ``False`` while another process holds one."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
