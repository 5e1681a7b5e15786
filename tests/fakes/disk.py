"""A disk that fills up: the spool's :class:`~tracker_client._spool.DiskIO` with a byte
budget, for the out-of-disk tests of the client."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from tracker_client._meta import SpoolMeta
from tracker_client._spool import DiskIO


def _enospc() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class FullDisk(DiskIO):
    """Writes succeed until ``free`` bytes are used, then ``write()`` is short once and
    raises ENOSPC, like a real filesystem filling up. ``free = None`` means unlimited.

    ``refuse_open`` makes creating files fail too (no room for a new segment),
    ``refuse_truncate`` makes cutting a torn record back fail, ``refuse_meta`` fails
    ``meta.json`` (on a real disk it fails whenever space is short)."""

    def __init__(self, free: int | None = None, errno_: int = errno.ENOSPC) -> None:
        self.free = free
        self.errno = errno_
        self.refuse_open = False
        self.refuse_truncate = False
        self.refuse_meta = False
        self.short_writes = 0
        self.failed_writes = 0

    def _error(self) -> OSError:
        return OSError(self.errno, os.strerror(self.errno))

    def open(self, path: Path, flags: int, mode: int) -> int:
        if self.refuse_open and (flags & os.O_CREAT) and not path.exists():
            raise self._error()
        return super().open(path, flags, mode)

    def write(self, fd: int, data: memoryview) -> int:
        if self.free is None:
            return super().write(fd, data)
        if self.free == 0:
            self.failed_writes += 1
            raise self._error()
        part = data[: self.free]
        n = super().write(fd, part)
        self.free -= n
        if n < len(data):
            self.short_writes += 1
        return n

    def ftruncate(self, fd: int, length: int) -> None:
        if self.refuse_truncate:
            raise self._error()
        before = os.fstat(fd).st_size
        super().ftruncate(fd, length)
        if self.free is not None:  # cutting a record back frees its bytes
            self.free += max(0, before - length)

    def write_meta(self, directory: Path, meta: SpoolMeta) -> None:
        if self.refuse_meta or self.free == 0:
            tmp = directory / "meta.json.tmp"
            tmp.write_text("{\"torn")  # what a failed write leaves behind
            raise _enospc()
        super().write_meta(directory, meta)

    def make_room(self, free: int | None = None) -> None:
        """Space is back (``free`` bytes, unlimited by default)."""
        self.free = free
        self.refuse_open = self.refuse_truncate = self.refuse_meta = False
