"""On-disk spool of unacknowledged batches: what makes "never loses" true.

Every batch is appended here *before* it is sent, so a dead server, a slow network,
a killed trainer or an offline compute node all end the same way: the records stay on
disk until the server acknowledges them, and whoever opens the spool next (the
restarted job, or ``tracker sync``) delivers them.

Layout of one spool (one writer) directory::

    meta.json        identity: server, experiment, run key, run id, writer id, rank, ...
    lock             flock()ed while a process owns the spool
    ops.jsonl        params / tags / status changes waiting for delivery (see _control)
    00000000000000000001.seg, ...   segments named by their first seq

A segment is a sequence of records ``header | payload``; the header carries a magic
number, the payload length, a CRC-32 (of seq, points, time and payload), the seq, the
point count and the creation time. A record torn by a crash (short, or failing its
CRC) ends recovery of that segment's tail, which is truncated; a corrupt record in the
middle is skipped by searching for the next magic. Seqs that have no readable record
are delivered as empty placeholders, which the server refuses but counts as consumed,
so the writer's seqs stay contiguous.

Writes are plain ``write()`` calls (no fsync by default): a killed process loses
nothing that reached the page cache; only a machine crash can. ``fsync=True`` trades
throughput for surviving that too.

Out of disk (``ENOSPC``/``EDQUOT``, or any other write error) is handled like the
``max_bytes`` limit: the batch is dropped (``drop_oldest`` first evicts older segments
and retries), counted in :class:`SpoolCounters`, and nothing raises to the caller. A
record is either written whole or cut back off the segment, so a short ``write()``
never leaves a torn record counted as spooled. A ``meta.json`` that cannot be written
keeps the previous one on disk (it is only ever replaced atomically) and is written
again at the next chance.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import os
import shutil
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from tracker_client._meta import SpoolMeta, read_meta, write_meta
from tracker_client._tail import TAIL_FILE, Tail, create_tail, recover_tail

try:  # POSIX only; elsewhere a spool is simply not protected against a second owner
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

MAGIC = 0x314B5254  # b"TRK1" little-endian
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_HEADER = struct.Struct("<IIIQIQ")  # magic, payload length, crc, seq, points, created_ns
_CRC_FIELDS = struct.Struct("<QIQ")  # seq, points, created_ns (covered by the CRC)
HEADER_BYTES = _HEADER.size
LOCK_FILE = "lock"
SEGMENT_SUFFIX = ".seg"

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
"""Write errors meaning "no space": the full policy applies as for ``max_bytes``."""

FullPolicy = Literal["drop_new", "drop_oldest"]
FULL_POLICIES: tuple[FullPolicy, ...] = ("drop_new", "drop_oldest")

log = logging.getLogger("tracker_client")


class SpoolLocked(RuntimeError):
    """Another live process owns this spool."""


@dataclass(frozen=True)
class Record:
    """One batch as stored: seq, serialized ``MetricColumns``, point count."""

    seq: int
    payload: bytes
    points: int
    created_ns: int

    @property
    def placeholder(self) -> bool:
        """True for a seq whose data was lost (corrupt or dropped): sent empty."""
        return not self.payload


@dataclass
class SpoolCounters:
    """What the spool had to give up, and why (all cumulative)."""

    corrupt_records: int = 0
    """Unreadable records skipped at recovery (CRC mismatch, bad header)."""
    torn_bytes: int = 0
    """Bytes of torn tail truncated at recovery."""
    dropped_batches: int = 0
    """Batches not stored (drop_new) or evicted unacknowledged (drop_oldest) when full."""
    dropped_points: int = 0
    """Points of those batches."""
    trimmed_points: int = 0
    """Points of acknowledged (committed or rejected) batches since the spool was opened;
    updated under the same lock as the acknowledged seq, so the two always agree."""
    write_errors: int = 0
    """Batches dropped because the disk refused them (out of space, quota, I/O error);
    included in ``dropped_batches``."""
    meta_write_errors: int = 0
    """Failed writes of ``meta.json`` (the previous one stays; retried later)."""
    last_write_error: str = ""
    """The most recent write error, "" when none happened."""


class DiskIO:
    """The system calls the spool writes through. Tests substitute a disk that fills up
    (``tests/fakes/disk.py``); everything else uses these plain ``os`` calls."""

    def open(self, path: Path, flags: int, mode: int) -> int:
        """os.open."""
        return os.open(path, flags, mode)

    def write(self, fd: int, data: memoryview) -> int:
        """os.write: may write less than asked."""
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        """os.fsync."""
        os.fsync(fd)

    def ftruncate(self, fd: int, length: int) -> None:
        """os.ftruncate."""
        os.ftruncate(fd, length)

    def write_meta(self, directory: Path, meta: SpoolMeta) -> None:
        """Replace meta.json atomically (see :func:`tracker_client._meta.write_meta`)."""
        write_meta(directory, meta)


DISK = DiskIO()


@dataclass
class _Segment:
    first_seq: int
    path: Path
    size: int = 0
    last_seq: int = 0
    read_fd: int | None = None
    sealed: bool = False
    """No more appends (a failed write could not be cut back): the next record starts a
    new segment, and recovery skips the unreadable end of this one."""


@dataclass
class _Entry:
    segment: _Segment
    offset: int
    length: int
    points: int
    created_ns: int


def encode_record(seq: int, payload: bytes, points: int, created_ns: int) -> bytes:
    """Header + payload of one record."""
    crc = zlib.crc32(payload, zlib.crc32(_CRC_FIELDS.pack(seq, points, created_ns)))
    return _HEADER.pack(MAGIC, len(payload), crc, seq, points, created_ns) + payload


def scan_records(data: bytes) -> tuple[list[tuple[int, int, int, int, int]], int, int]:
    """Parse a segment's bytes.

    Returns ([(seq, payload offset, length, points, created_ns)], end of the last good
    record, number of corrupt records skipped).
    """
    out: list[tuple[int, int, int, int, int]] = []
    pos = 0
    good_end = 0
    corrupt = 0
    size = len(data)
    while pos + HEADER_BYTES <= size:
        magic, length, crc, seq, points, created = _HEADER.unpack_from(data, pos)
        start = pos + HEADER_BYTES
        ok = magic == MAGIC and start + length <= size
        if ok:
            payload = memoryview(data)[start:start + length]
            ok = zlib.crc32(payload, zlib.crc32(_CRC_FIELDS.pack(seq, points, created))) == crc
        if ok:
            out.append((seq, start, length, points, created))
            pos = good_end = start + length
            continue
        nxt = data.find(_MAGIC_BYTES, pos + 1)
        if nxt < 0:
            break
        corrupt += 1
        pos = nxt
    return out, good_end, corrupt


class Spool:
    """Bounded, crash-safe store of one writer's unacknowledged batches. Thread-safe."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 1 << 30,
        policy: FullPolicy = "drop_new",
        segment_bytes: int = 16 << 20,
        cache_bytes: int = 64 << 20,
        fsync: bool = False,
        io: DiskIO = DISK,
        tail_bytes: int = 0,
        max_batch_points: int = 100_000,
    ) -> None:
        """Open (creating or recovering) the spool in ``path``; raise SpoolLocked when
        a live process owns it. ``io`` is where writes go (a fake in tests).

        A ``tail.bin`` left by a dead owner is recovered into batches (exactly once,
        see ``_tail``); ``tail_bytes`` > 0 then makes a fresh tail for this owner's
        ``log()`` calls (:attr:`tail`)."""
        if policy not in FULL_POLICIES:
            raise ValueError(f"spool policy must be one of {', '.join(FULL_POLICIES)}, "
                             f"got {policy!r}")
        self.path = path
        self.max_bytes = max_bytes
        self.policy: FullPolicy = policy
        # Several segments per spool so that trimming frees space in useful steps and
        # drop_oldest can evict without touching the segment being written.
        self._segment_bytes = max(64 << 10, min(segment_bytes, max_bytes // 8))
        self._cache_bytes = cache_bytes
        self._fsync = fsync
        self._io = io
        self._failing = ""  # the write error of the current out-of-disk episode
        self._full = False  # inside a spool-full (max_bytes) episode
        self._meta_dirty = False
        self._lock = threading.Lock()
        self.counters = SpoolCounters()
        path.mkdir(parents=True, exist_ok=True)
        self._lock_fd = self._take_lock()
        self._meta = self._read_meta()
        self._segments: collections.deque[_Segment] = collections.deque()
        self._index: dict[int, _Entry] = {}
        self._cache: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self._cached = 0
        self._bytes = 0
        self._pending_points = 0
        self._acked = self._meta.acked_seq
        self._write_fd: int | None = None
        self._closed = False
        self._recover()
        self.tail_recovered_points = recover_tail(self, self.append, max_batch_points)
        """Points a dead owner had logged but not spooled, spooled now from its tail."""
        self.tail: Tail | None = create_tail(path, tail_bytes, 0) if tail_bytes > 0 else None

    # -- opening -----------------------------------------------------------------------

    def _take_lock(self) -> int:
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise SpoolLocked(f"spool {self.path} is in use by another process") from None
        return fd

    def _read_meta(self) -> SpoolMeta:
        try:
            return read_meta(self.path)
        except FileNotFoundError:
            return SpoolMeta()
        except (OSError, ValueError) as exc:
            # The records are still worth keeping: they are delivered under whatever
            # identity the owner writes next.
            log.warning("tracker_client: spool %s: %s; starting from an empty meta",
                        self.path, exc)
            return SpoolMeta()

    def _recover(self) -> None:
        files = sorted(p for p in self.path.iterdir() if p.name.endswith(SEGMENT_SUFFIX))
        last_seq = self._acked
        for i, p in enumerate(files):
            try:
                first = int(p.name[: -len(SEGMENT_SUFFIX)])
            except ValueError:
                continue
            data = p.read_bytes()
            records, good_end, corrupt = scan_records(data)
            self.counters.corrupt_records += corrupt
            if i == len(files) - 1 and good_end < len(data):
                # A torn tail (the writer died mid-record): cut it so appends stay aligned.
                self.counters.torn_bytes += len(data) - good_end
                os.truncate(p, good_end)
                data = data[:good_end]
            seg = _Segment(first, p, len(data))
            for seq, offset, length, points, created in records:
                seg.last_seq = max(seg.last_seq, seq)
                last_seq = max(last_seq, seq)
                if seq > self._acked and seq not in self._index:
                    self._index[seq] = _Entry(seg, offset, length, points, created)
                    self._pending_points += points
            if seg.last_seq and seg.last_seq <= self._acked:
                self._unlink(seg)
                continue
            self._segments.append(seg)
            self._bytes += seg.size
        self._next_seq = max(last_seq, self._meta.last_seq) + 1

    # -- meta --------------------------------------------------------------------------

    @property
    def meta(self) -> SpoolMeta:
        """The spool's meta as last written."""
        return self._meta

    def update_meta(self, change: Callable[[SpoolMeta], SpoolMeta]) -> SpoolMeta:
        """Apply ``change`` (e.g. ``lambda m: replace(m, closed=True)``) and write meta.json.

        Runs under the spool's lock, so concurrent updates never lose each other's fields.
        """
        with self._lock:
            self._meta = change(self._meta)
            self._write_meta()
            return self._meta

    def _write_meta(self) -> None:
        # The seq counters are the spool's own: whatever a caller passed, persist the truth.
        self._meta = replace(self._meta, acked_seq=self._acked, last_seq=self._next_seq - 1)
        try:
            self._io.write_meta(self.path, self._meta)
        except OSError as exc:
            # The old meta.json stays whole (replaced atomically). It is older, never
            # wrong: a smaller acked_seq only resends what the server drops as committed,
            # a missing run id is found again by run key. So keep going and retry later.
            self.counters.meta_write_errors += 1
            if not self._meta_dirty:
                log.warning("tracker_client: spool %s: cannot write %s (%s); keeping the "
                            "previous one, will retry", self.path, "meta.json", exc)
            self._meta_dirty = True
            with contextlib.suppress(OSError):
                (self.path / "meta.json.tmp").unlink()
            return
        self._meta_dirty = False

    # -- writing -----------------------------------------------------------------------

    def append(self, payload: bytes, points: int) -> int | None:
        """Store one batch and return its seq, or None when it was dropped: the spool is
        full (``max_bytes``) or the disk refused the write. Never raises OSError."""
        created = time.time_ns()
        with self._lock:
            if self._closed:
                raise RuntimeError("spool is closed")
            need = HEADER_BYTES + len(payload)
            if self._bytes + need > self.max_bytes and not self._make_room(need):
                if not self._full:
                    self._full = True
                    log.warning("tracker_client: spool %s is full (%d bytes); policy %s "
                                "drops points (see run.stats)", self.path, self.max_bytes,
                                self.policy)
                self._drop(points)
                return None
            self._full = False
            seq = self._next_seq
            data = encode_record(seq, payload, points, created)
            while True:
                try:
                    seg = self._write_record(data)
                    break
                except OSError as exc:
                    if (exc.errno in DISK_FULL_ERRNOS and self.policy == "drop_oldest"
                            and self._evict_oldest()):
                        continue  # freed a segment: try again
                    self._write_failed(exc)
                    self._drop(points)
                    return None
            if self._failing:
                log.warning("tracker_client: spool %s: writes succeed again after %s",
                            self.path, self._failing)
                self._failing = ""
            entry = _Entry(seg, seg.size + HEADER_BYTES, len(payload), points, created)
            seg.size += len(data)
            seg.last_seq = seq
            self._bytes += len(data)
            self._index[seq] = entry
            self._pending_points += points
            self._next_seq = seq + 1
            if self._cached + len(payload) <= self._cache_bytes:
                self._cache[seq] = payload
                self._cached += len(payload)
            if self._meta_dirty:  # space is back: persist what could not be written
                self._write_meta()
            return seq

    def _write_record(self, data: bytes) -> _Segment:
        """Write one whole record at the end of the active segment, or raise OSError
        with the segment as it was (a partial write is cut back off)."""
        seg = self._active_segment(len(data))
        fd = self._write_fd
        assert fd is not None
        view = memoryview(data)
        done = 0
        try:
            while done < len(data):  # write() may be short (e.g. the disk just filled)
                n = self._io.write(fd, view[done:])
                if n <= 0:
                    raise OSError(errno.ENOSPC, "write returned 0")
                done += n
            if self._fsync:
                self._io.fsync(fd)
        except OSError:
            if done:
                self._cut_back(seg)
            raise
        return seg

    def _cut_back(self, seg: _Segment) -> None:
        """Remove a partly written record from the end of ``seg``."""
        assert self._write_fd is not None
        try:
            self._io.ftruncate(self._write_fd, seg.size)
        except OSError as exc:
            # Cannot cut: never append after the torn bytes. Recovery stops reading this
            # segment at them (they fail the CRC); the next record opens a new segment.
            log.warning("tracker_client: spool %s: cannot truncate %s after a failed write "
                        "(%s); starting a new segment", self.path, seg.path.name, exc)
            seg.sealed = True
            os.close(self._write_fd)
            self._write_fd = None

    def _write_failed(self, exc: OSError) -> None:
        self.counters.write_errors += 1
        self.counters.last_write_error = f"{errno.errorcode.get(exc.errno or 0, 'OSError')}: " \
                                         f"{exc.strerror or exc}"
        if not self._failing:
            log.warning("tracker_client: spool %s: cannot write (%s); policy %s drops "
                        "points until writes succeed (see run.stats)", self.path,
                        self.counters.last_write_error, self.policy)
        self._failing = self.counters.last_write_error

    def _drop(self, points: int) -> None:
        self.counters.dropped_batches += 1
        self.counters.dropped_points += points

    @property
    def io(self) -> DiskIO:
        """Where this spool's writes go (ops.jsonl is written through it too)."""
        return self._io

    @property
    def write_error(self) -> str:
        """The error of the current out-of-disk episode, "" while writes succeed."""
        return self._failing

    def _active_segment(self, need: int) -> _Segment:
        seg = self._segments[-1] if self._segments else None
        if seg is not None and self._write_fd is not None and not seg.sealed and (
                seg.size == 0 or seg.size + need <= self._segment_bytes):
            return seg
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        if seg is None or seg.sealed or (seg.size > 0 and seg.size + need > self._segment_bytes):
            new = _Segment(self._next_seq, self.path / f"{self._next_seq:020d}{SEGMENT_SUFFIX}")
            # Opened before it is listed: a failed open (no space for the file) leaves
            # the spool as it was.
            self._write_fd = self._io.open(new.path, flags, 0o644)
            self._segments.append(new)
            return new
        self._write_fd = self._io.open(seg.path, flags, 0o644)
        return seg

    def _make_room(self, need: int) -> bool:
        if self.policy != "drop_oldest":
            return False
        while self._bytes + need > self.max_bytes and self._evict_oldest():
            pass
        return self._bytes + need <= self.max_bytes

    def _evict_oldest(self) -> bool:
        """Evict the oldest unacknowledged segment, never the one being written; False
        when there is none."""
        if len(self._segments) <= 1:
            return False
        seg = self._segments.popleft()
        for seq in range(seg.first_seq, seg.last_seq + 1):
            entry = self._index.pop(seq, None)
            if entry is not None:
                self._pending_points -= entry.points
                self.counters.dropped_batches += 1
                self.counters.dropped_points += entry.points
                self._uncache(seq)
        self._bytes -= seg.size
        self._unlink(seg)
        return True

    # -- reading -----------------------------------------------------------------------

    def get(self, seq: int) -> Record | None:
        """The record of ``seq``; a placeholder when its data was lost; None when
        ``seq`` is acknowledged already or not written yet."""
        with self._lock:
            if seq <= self._acked or seq >= self._next_seq:
                return None
            entry = self._index.get(seq)
            if entry is None:
                return Record(seq, b"", 0, 0)
            payload = self._cache.get(seq)
            if payload is None:
                if entry.segment.read_fd is None:
                    entry.segment.read_fd = os.open(entry.segment.path, os.O_RDONLY)
                payload = os.pread(entry.segment.read_fd, entry.length, entry.offset)
            return Record(seq, payload, entry.points, entry.created_ns)

    # -- acknowledgement ---------------------------------------------------------------

    def trim(self, acked_seq: int) -> int:
        """Forget everything through ``acked_seq``; return the points newly acknowledged."""
        with self._lock:
            if acked_seq <= self._acked:
                return 0
            acked_points = 0
            for seq in range(self._acked + 1, min(acked_seq, self._next_seq - 1) + 1):
                entry = self._index.pop(seq, None)
                if entry is not None:
                    acked_points += entry.points
                    self._uncache(seq)
            self._pending_points -= acked_points
            self.counters.trimmed_points += acked_points
            self._acked = acked_seq
            self._next_seq = max(self._next_seq, acked_seq + 1)
            freed = False
            while self._segments and self._segments[0].last_seq <= acked_seq:
                seg = self._segments[0]
                if seg is self._segments[-1]:
                    if self._write_fd is not None:
                        os.close(self._write_fd)
                        self._write_fd = None
                    if seg.size == 0:
                        break
                self._segments.popleft()
                self._bytes -= seg.size
                self._unlink(seg)
                freed = True
            if freed:
                # Persisted only when a segment goes, so a restart does not resend a
                # whole deleted segment's worth of knowledge (the server dedups anyway).
                self._write_meta()
            return acked_points

    def _uncache(self, seq: int) -> None:
        payload = self._cache.pop(seq, None)
        if payload is not None:
            self._cached -= len(payload)

    def _unlink(self, seg: _Segment) -> None:
        if seg.read_fd is not None:
            os.close(seg.read_fd)
            seg.read_fd = None
        with contextlib.suppress(FileNotFoundError):
            seg.path.unlink()

    # -- state -------------------------------------------------------------------------

    @property
    def acked_seq(self) -> int:
        """Highest seq known durable on the server."""
        return self._acked

    @property
    def last_seq(self) -> int:
        """Highest seq stored so far (0 when none)."""
        return self._next_seq - 1

    @property
    def pending_batches(self) -> int:
        """Unacknowledged seqs (placeholders included)."""
        return max(0, self._next_seq - 1 - self._acked)

    @property
    def pending_points(self) -> int:
        """Unacknowledged points."""
        return self._pending_points

    @property
    def bytes(self) -> int:
        """Bytes on disk."""
        return self._bytes

    def oldest_pending_ns(self) -> int | None:
        """Creation time (ns since epoch) of the oldest unacknowledged record."""
        with self._lock:
            for seq in range(self._acked + 1, self._next_seq):
                entry = self._index.get(seq)
                if entry is not None:
                    return entry.created_ns
            return None

    # -- closing -----------------------------------------------------------------------

    def close(self) -> None:
        """Close files and release the lock (the directory stays for later delivery)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(OSError):
                self._write_meta()
            if self._write_fd is not None:
                os.close(self._write_fd)
                self._write_fd = None
            for seg in self._segments:
                if seg.read_fd is not None:
                    os.close(seg.read_fd)
                    seg.read_fd = None
            tail = self.tail
            if tail is not None:
                tail.close()
                if tail.persistent and tail.covered >= tail.write_pos:
                    # Everything in it is spooled: give its disk back.
                    with contextlib.suppress(FileNotFoundError):
                        (self.path / TAIL_FILE).unlink()
            os.close(self._lock_fd)

    def destroy(self) -> None:
        """Close and delete the directory: only once everything is delivered."""
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)

    def end(self, delivered: bool) -> None:
        """The writer is done with this spool: delete it when everything in it was
        ``delivered``, else mark it closed and keep it for the next start or
        ``tracker sync``."""
        if delivered:
            self.destroy()
        else:
            self.update_meta(lambda m: replace(m, closed=True))
            self.close()


@dataclass
class SpoolOptions:
    """How a spool is opened (a subset of the client options)."""

    max_bytes: int = 1 << 30
    policy: FullPolicy = "drop_new"
    segment_bytes: int = 16 << 20
    cache_bytes: int = 64 << 20
    fsync: bool = False
    io: DiskIO = DISK
    tail_bytes: int = 32 << 20
    max_batch_points: int = 100_000

    def open(self, path: Path, *, tail: bool = False) -> Spool:
        """Open the spool in ``path`` with these options; ``tail``: for a live writer
        (its log() calls go to a fresh tail), not for delivering an orphan."""
        return Spool(path, max_bytes=self.max_bytes, policy=self.policy,
                     segment_bytes=self.segment_bytes, cache_bytes=self.cache_bytes,
                     fsync=self.fsync, io=self.io, tail_bytes=self.tail_bytes if tail else 0,
                     max_batch_points=self.max_batch_points)
