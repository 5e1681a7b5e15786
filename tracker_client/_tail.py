"""The tail: a memory-mapped ring that ``log()`` writes into, so a killed process loses
nothing it logged.

``log()`` packs each record into a ring of bytes mapped from ``tail.bin`` in the spool
directory (``MAP_SHARED``). When the process dies (SIGKILL, OOM killer, segfault) the
kernel keeps those pages in the page cache and writes them to the file, so the records
the batcher had not cut into a spool batch yet survive; only a machine crash (or power
loss) before the kernel's writeback can lose them. The ring is also the queue between
``log()`` and the batcher thread: records are bytes, not Python objects, so a long
queue costs the garbage collector nothing and ``log()`` never triggers a collection.

Layout of ``tail.bin``: a 4 KiB header (magic, version, capacity, two state slots),
then ``capacity`` bytes of ring. Positions are logical (they only grow); the physical
place is ``position % capacity``. An entry never straddles the ring's end (a pad
entry, or a gap shorter than an entry header, fills the rest of a lap).

Entry: ``length u32 | crc u32 | position u64 | epoch u32 | kind u8 | 3 pad`` then the
body: a scalar record (step, wall time, key names, float64 values) or a series
(wall time, key, int64 steps, float64 values). The CRC (written last) covers
everything after itself; ``position`` and ``epoch`` make a stale entry (an earlier
lap, an earlier life of the file) fail the check, so recovery stops at the first
entry this life did not write whole.

State slot (two, written alternately, the valid one with the higher generation
wins, so a torn slot write never loses the state): ``gen | epoch | covered |
pending_seq | pending_end | crc``. ``covered``: everything before it is in the spool
(or counted as dropped). Cutting a batch is three steps: (1) write
``pending = (seq the spool will give the batch, end of its records)``, (2) append the
batch to the spool, (3) write ``covered = end``. Recovery knows which side of (2) a
kill fell on from the spool's last seq, so a record is recovered exactly once: never
lost, never delivered twice, even when recovery itself is killed.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import platform
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tracker_client._columns import ColumnBuilder

if TYPE_CHECKING:
    from tracker_client._spool import Spool

log = logging.getLogger("tracker_client")

TAIL_FILE = "tail.bin"
MAGIC = 0x544B5254  # b"TRKT" little-endian
VERSION = 1
HEADER_BYTES = 4096
_FILE_HEADER = struct.Struct("<IIQ")  # magic, version, capacity
_SLOT = struct.Struct("<QQQQQ")  # gen, epoch, covered, pending_seq, pending_end
_SLOT_OFFSETS = (64, 128)
_PUBLISHED = struct.Struct("<Q")
_CRC = struct.Struct("<I")
_PUBLISHED_OFFSET = 256
"""Where a writer in another process publishes ``write_pos`` (a cache line of its own:
the reader's state-slot writes never share it)."""
_ENTRY = struct.Struct("<IIQIB3x")  # length, crc, position, epoch, kind
ENTRY_HEADER = _ENTRY.size
_SCALAR = struct.Struct("<qqHH")  # step, wall_ns, number of keys, key blob bytes
_SERIES = struct.Struct("<qQH")  # wall_ns, points, key bytes
KIND_SCALARS = 1
KIND_SERIES = 2
KIND_PAD = 3
KIND_BLOCK = 0
"""Not on disk: :meth:`Tail.read_blocks` yields runs of scalar records as a ScalarBlock."""
MIN_BLOCK = 8
"""Records of one key tuple in a row before they are decoded as one block."""
MAX_BLOCK = 4096
MAX_KEYS = 0xFFFF
_KEY_CACHE_LIMIT = 4096
_IN_ORDER_STORES = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")

Scalars = tuple[tuple[str, ...], tuple[float, ...], int, int]
"""(keys, values, step, wall_ns), as log() got them."""
Series = tuple[str, Any, Any, int]
"""(key, int64 steps, float64 values, wall_ns), as log_series() got them."""


@dataclass(frozen=True)
class ScalarBlock:
    """Consecutive ``log()`` records of one key tuple, decoded with numpy at once."""

    keys: tuple[str, ...]
    steps: Any
    """int64, one per record."""
    values: Any
    """float64 (records, keys), C-contiguous."""
    wall_ns: Any
    """int64, one per record."""
    start: int
    """Position of the first record; record i ends at ``start + (i + 1) * length``."""
    length: int


@dataclass
class TailState:
    """What the state slots say."""

    gen: int = 0
    epoch: int = 0
    covered: int = 0
    pending_seq: int = 0
    pending_end: int = 0


def _crc(buf: Any, start: int, end: int) -> int:
    return zlib.crc32(memoryview(buf)[start:end])


class _KeyFormat:
    """The packing of one key tuple: its key blob and the struct of its entry."""

    __slots__ = ("blob", "blob_len", "count", "length", "struct")

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.blob = "\x00".join(keys).encode("utf-8")
        self.blob_len = len(self.blob)
        n = self.count = len(keys)
        self.struct = struct.Struct(f"<IIQIB3xqqHH{len(self.blob)}s{n}d")
        size = self.struct.size
        self.length = size + (-size % 8)  # 8-aligned entries: aligned header stores


class Tail:
    """The ring of one spool. Written by one thread (``log()``), read by the batcher."""

    def __init__(self, mm: mmap.mmap, capacity: int, state: TailState, path: Path | None,
                 fd: int | None) -> None:
        self._mm = mm
        self._view = memoryview(mm)
        """For the CRC of each record without copying it (released in close)."""
        self.capacity = capacity
        self.path = path
        """``tail.bin``; None for a memory-only ring (the file could not be made)."""
        self._fd = fd
        self._state = state
        self.covered = state.covered
        """Records before this position are spooled (or counted as dropped)."""
        self.write_pos = state.covered
        """End of the last record written (published after the record is whole)."""
        self.read_pos = state.covered
        """Where the batcher reads next."""
        self._epoch = state.epoch
        self._keys: dict[tuple[str, ...], _KeyFormat | None] = {}
        self._blobs: dict[bytes, tuple[str, ...]] = {}
        self._values: dict[int, struct.Struct] = {}
        self._dtypes: dict[tuple[int, int, int], np.dtype[Any]] = {}
        self.closed = False
        self.shared = False
        """Writer and reader are different processes (the sender process): the writer
        publishes ``write_pos`` in the header and reads ``covered`` back from the state
        slots; the reader takes ``write_pos`` from the header (:meth:`sync`)."""

    @property
    def persistent(self) -> bool:
        """Whether the records survive the process (a file, not anonymous memory)."""
        return self.path is not None

    # -- writing (the training thread) ----------------------------------------------------

    def _room(self, length: int) -> int | None:
        """Position where an entry of ``length`` bytes goes (after padding to the next
        lap when it would straddle the end), or None when the ring is full."""
        pos = self._fit(length)
        if pos is None and self.shared:
            # The reader (another process) commits ``covered`` into the state slots.
            state = _read_state(self._mm)
            if state is not None and state.covered > self.covered:
                self.covered = state.covered
                pos = self._fit(length)
        return pos

    def _fit(self, length: int) -> int | None:
        pos = self.write_pos
        phys = pos % self.capacity
        if phys + length > self.capacity:
            pad = self.capacity - phys
            if pos + pad + length - self.covered > self.capacity:
                return None
            if pad >= ENTRY_HEADER:
                self._write_pad(pos, pad)
            pos += pad
        elif pos + length - self.covered > self.capacity:
            return None
        return pos

    def _write_pad(self, pos: int, length: int) -> None:
        phys = HEADER_BYTES + pos % self.capacity
        mm = self._mm
        _ENTRY.pack_into(mm, phys, length, 0, pos, self._epoch, KIND_PAD)
        struct.pack_into("<I", mm, phys + 4, _crc(mm, phys + 8, phys + ENTRY_HEADER))

    def log_scalars(self, keys: tuple[str, ...], values: Iterable[Any], step: int,
                    wall_ns: int) -> int:
        """Write one log() record. 1: written; 0: the ring is full (drop, count it);
        -1: keys the ring cannot hold (not all str, NUL inside): use the queue.

        ``values`` go straight into the entry: ``struct`` converts each with
        ``__float__`` (Python and numpy numbers, 0-d arrays and tensors) as ``float()``
        would; TypeError / ValueError when one cannot be (nothing is written). This is
        the training thread's path: every line here costs every step."""
        if self.closed:
            return 0
        fmt = self._keys.get(keys)
        if fmt is None:
            if keys in self._keys:
                return -1
            fmt = self._key_format(keys)
            if fmt is None:
                return -1
        length = fmt.length
        pos = self.write_pos
        cap = self.capacity
        phys = pos % cap
        if phys + length > cap or pos + length - self.covered > cap:
            room = self._room(length)  # a lap ends here, or the ring looks full
            if room is None:
                return 0
            pos = room
            phys = pos % cap
        phys += HEADER_BYTES
        mm = self._mm
        try:
            fmt.struct.pack_into(mm, phys, length, 0, pos, self._epoch, KIND_SCALARS, step,
                                 wall_ns, fmt.count, fmt.blob_len, fmt.blob, *values)
        except struct.error:
            # Not a float to struct (a str, or a type with only __index__): float()
            # decides, with its own error for what no float can be made of.
            fmt.struct.pack_into(mm, phys, length, 0, pos, self._epoch, KIND_SCALARS, step,
                                 wall_ns, fmt.count, fmt.blob_len, fmt.blob,
                                 *[float(v) for v in values])
        # The CRC last: a record torn by a kill fails it.
        _CRC.pack_into(mm, phys + 4, zlib.crc32(self._view[phys + 8:phys + length]))
        pos += length
        self.write_pos = pos
        if self.shared:
            _PUBLISHED.pack_into(mm, _PUBLISHED_OFFSET, pos)
        return 1

    def _key_format(self, keys: tuple[str, ...]) -> _KeyFormat | None:
        if len(self._keys) >= _KEY_CACHE_LIMIT:
            self._keys.clear()
        fmt: _KeyFormat | None = None
        if (len(keys) <= MAX_KEYS and all(type(k) is str and "\x00" not in k for k in keys)):
            with contextlib.suppress(UnicodeEncodeError):  # lone surrogates
                fmt = _KeyFormat(keys)
            if fmt is not None and (len(fmt.blob) > 0xFFFF or fmt.length > self.capacity // 4):
                fmt = None
        self._keys[keys] = fmt
        return fmt

    def log_series(self, key: str, steps: Any, values: Any, wall_ns: int,
                   max_points: int) -> int:
        """Write one log_series() call (1 / 0 / -1 as :meth:`log_scalars`); -1 also for a
        series too big for one batch or a quarter of the ring."""
        if self.closed:
            return 0
        n = int(steps.shape[0])
        if type(key) is not str or "\x00" in key or n > max_points:
            return -1
        try:
            kb = key.encode("utf-8")
        except UnicodeEncodeError:
            return -1
        body = ENTRY_HEADER + _SERIES.size + len(kb) + 16 * n
        length = body + (-body % 8)
        if length > self.capacity // 4 or len(kb) > 0xFFFF:
            return -1
        pos = self._room(length)
        if pos is None:
            return 0
        mm = self._mm
        phys = HEADER_BYTES + pos % self.capacity
        _ENTRY.pack_into(mm, phys, length, 0, pos, self._epoch, KIND_SERIES)
        at = phys + ENTRY_HEADER
        _SERIES.pack_into(mm, at, wall_ns, n, len(kb))
        at += _SERIES.size
        mm[at:at + len(kb)] = kb
        at += len(kb)
        mm[at:at + 8 * n] = steps.tobytes()
        at += 8 * n
        mm[at:at + 8 * n] = values.tobytes()
        struct.pack_into("<I", mm, phys + 4, zlib.crc32(mm[phys + 8:phys + length]))
        self.write_pos = pos + length
        if self.shared:
            _PUBLISHED.pack_into(mm, _PUBLISHED_OFFSET, pos + length)
        return 1

    # -- reading (the batcher thread, and recovery) -------------------------------------

    def sync(self) -> None:
        """Reader of a shared tail: take the writer's published ``write_pos``.

        A published position covers whole entries only: the writer publishes after the
        entry's CRC. x86-64 (TSO) shows another core's stores in program order, so
        that is enough there; elsewhere the entries the position covers are also checked
        against their CRCs, and the position stops at the first that fails (it is read
        again at the next sync)."""
        if not self.shared or self.closed:
            return
        (published,) = _PUBLISHED.unpack_from(self._mm, _PUBLISHED_OFFSET)
        if published <= self.write_pos:
            return
        if not _IN_ORDER_STORES:
            pos = self.write_pos
            while pos < published:
                length = self._valid(pos)
                if length is None:
                    break
                pos += length
            published = pos
        self.write_pos = published

    def read(self, limit: int = 1 << 62) -> Iterator[tuple[int, Any, int]]:
        """Records after ``read_pos`` up to ``write_pos`` (at most ``limit``): (kind,
        record, end position). Advances ``read_pos``."""
        end = self.write_pos
        mm = self._mm
        cap = self.capacity
        count = 0
        while self.read_pos < end and count < limit:
            pos = self.read_pos
            phys_off = pos % cap
            if cap - phys_off < ENTRY_HEADER:  # a gap too short for a pad entry
                self.read_pos = pos + cap - phys_off
                continue
            phys = HEADER_BYTES + phys_off
            length, _crc_v, _pos, _epoch, kind = _ENTRY.unpack_from(mm, phys)
            self.read_pos = pos + length
            if kind == KIND_PAD:
                continue
            count += 1
            yield kind, self._decode(kind, phys), pos + length

    def read_blocks(self) -> Iterator[tuple[int, Any, int]]:
        """:meth:`read`, except that runs of scalar records of one key tuple (a training
        loop logging the same dict every step) come as one :class:`ScalarBlock` (kind
        KIND_BLOCK): numpy decodes them with no Python per record, which is most of the
        batcher's GIL time saved (the training thread waits for that GIL)."""
        end = self.write_pos
        mm = self._mm
        cap = self.capacity
        while self.read_pos < end:
            pos = self.read_pos
            phys_off = pos % cap
            if cap - phys_off < ENTRY_HEADER:
                self.read_pos = pos + cap - phys_off
                continue
            phys = HEADER_BYTES + phys_off
            length, _crc_v, _pos, _epoch, kind = _ENTRY.unpack_from(mm, phys)
            if kind == KIND_SCALARS:
                room = min(end - pos, cap - phys_off) // length
                block = self._block(phys, pos, length, min(room, MAX_BLOCK)) \
                    if room >= MIN_BLOCK else None
                if block is not None:
                    self.read_pos = pos + block.steps.shape[0] * length
                    yield KIND_BLOCK, block, self.read_pos
                    continue
            self.read_pos = pos + length
            if kind != KIND_PAD:
                yield kind, self._decode(kind, phys), pos + length

    def _block(self, phys: int, pos: int, length: int, room: int) -> ScalarBlock | None:
        """The run of records like the one at ``phys`` (at most ``room``), or None when
        it is shorter than MIN_BLOCK."""
        mm = self._mm
        n, blen = struct.unpack_from("<HH", mm, phys + 40)
        blob = mm[phys + 44:phys + 44 + blen]
        probe = phys + (MIN_BLOCK - 1) * length  # cheap test first: is the 8th alike?
        plen, _c, ppos, _e, pkind = _ENTRY.unpack_from(mm, probe)
        if (not n or not blen or plen != length or pkind != KIND_SCALARS
                or ppos != pos + (MIN_BLOCK - 1) * length
                or mm[probe + 40:probe + 44 + blen] != mm[phys + 40:phys + 44 + blen]):
            return None
        dtype = self._dtypes.get((length, n, blen))
        if dtype is None:
            if len(self._dtypes) >= _KEY_CACHE_LIMIT:
                self._dtypes.clear()
            dtype = self._dtypes[(length, n, blen)] = np.dtype({
                "names": ["length", "pos", "kind", "step", "wall", "n", "blen", "blob",
                          "values"],
                "formats": ["<u4", "<u8", "u1", "<i8", "<i8", "<u2", "<u2", ("u1", (blen,)),
                            ("<f8", (n,))],
                "offsets": [0, 8, 20, 24, 32, 40, 42, 44, 44 + blen],
                "itemsize": length})
        rows = np.frombuffer(mm, dtype=dtype, count=room, offset=phys)
        try:
            alike = ((rows["length"] == length) & (rows["kind"] == KIND_SCALARS)
                     & (rows["pos"] == np.uint64(pos)
                        + np.arange(room, dtype=np.uint64) * np.uint64(length))
                     & (rows["n"] == n) & (rows["blen"] == blen)
                     & (rows["blob"] == np.frombuffer(blob, dtype=np.uint8)).all(axis=1))
            count = room if bool(alike.all()) else int(np.argmin(alike))
            if count < MIN_BLOCK:
                return None
            run = rows[:count]
            block = ScalarBlock(self._keys_of(blob), run["step"].copy(),
                                np.ascontiguousarray(run["values"]), run["wall"].copy(),
                                pos, length)
        finally:
            del rows  # no view may outlive this call: mmap.close() refuses while one does
        return block

    def _keys_of(self, blob: bytes) -> tuple[str, ...]:
        keys = self._blobs.get(blob)
        if keys is None:
            if len(self._blobs) >= _KEY_CACHE_LIMIT:
                self._blobs.clear()
            keys = self._blobs[blob] = tuple(blob.decode("utf-8").split("\x00"))
        return keys

    def _decode(self, kind: int, phys: int) -> Any:
        mm = self._mm
        at = phys + ENTRY_HEADER
        if kind == KIND_SCALARS:
            step, wall, n, blen = _SCALAR.unpack_from(mm, at)
            at += _SCALAR.size
            keys = self._keys_of(mm[at:at + blen])
            vs = self._values.get(n)
            if vs is None:
                vs = self._values[n] = struct.Struct(f"<{n}d")
            return keys, vs.unpack_from(mm, at + blen), step, wall
        wall, n, klen = _SERIES.unpack_from(mm, at)
        at += _SERIES.size
        key = mm[at:at + klen].decode("utf-8")
        at += klen
        steps = np.frombuffer(mm, dtype=np.int64, count=n, offset=at).copy()
        values = np.frombuffer(mm, dtype=np.float64, count=n, offset=at + 8 * n).copy()
        return key, steps, values, wall

    def _valid(self, pos: int) -> int | None:
        """Length of the entry at ``pos`` if this life wrote it whole, else None."""
        cap = self.capacity
        phys_off = pos % cap
        if cap - phys_off < ENTRY_HEADER:
            return cap - phys_off
        phys = HEADER_BYTES + phys_off
        length, crc, epos, epoch, kind = _ENTRY.unpack_from(self._mm, phys)
        if (epos != pos or epoch != self._epoch or kind not in (1, 2, 3)
                or length < ENTRY_HEADER or phys_off + length > cap):
            return None
        if _crc(self._mm, phys + 8, phys + length) != crc:
            return None
        return int(length)

    def valid_end(self) -> int:
        """End of the whole entries after ``covered`` (recovery: what survived)."""
        pos = self.covered
        while pos - self.covered < self.capacity:
            length = self._valid(pos)
            if length is None:
                break
            pos += length
        return pos

    # -- state --------------------------------------------------------------------------

    def _write_state(self, **change: int) -> None:
        st = self._state
        for k, v in change.items():
            setattr(st, k, v)
        st.gen += 1
        off = _SLOT_OFFSETS[st.gen % 2]
        _SLOT.pack_into(self._mm, off, st.gen, st.epoch, st.covered, st.pending_seq,
                        st.pending_end)
        struct.pack_into("<I", self._mm, off + _SLOT.size,
                         _crc(self._mm, off, off + _SLOT.size))

    def begin(self, seq: int, end: int) -> None:
        """Step 1 of a cut: the batch the spool will store as ``seq`` covers up to
        ``end``."""
        self._write_state(pending_seq=seq, pending_end=end)

    def commit(self, end: int) -> None:
        """Step 3 of a cut (also after a dropped batch: its points are counted)."""
        self.covered = end
        self._write_state(covered=end, pending_seq=0, pending_end=0)

    def close(self) -> None:
        """Unmap (what is written stays in the file)."""
        if self.closed:
            return
        self.closed = True
        self._view.release()
        with contextlib.suppress(BufferError, ValueError):
            self._mm.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _read_state(mm: mmap.mmap) -> TailState | None:
    best: TailState | None = None
    for off in _SLOT_OFFSETS:
        fields = _SLOT.unpack_from(mm, off)
        (crc,) = struct.unpack_from("<I", mm, off + _SLOT.size)
        if crc != _crc(mm, off, off + _SLOT.size) or fields[0] == 0:
            continue
        if best is None or fields[0] > best.gen:
            best = TailState(*fields)
    return best


def _map(path: Path, capacity: int) -> tuple[mmap.mmap, int]:
    fd = os.open(path, os.O_RDWR)
    try:
        return mmap.mmap(fd, HEADER_BYTES + capacity, mmap.MAP_SHARED,
                         mmap.PROT_READ | mmap.PROT_WRITE), fd
    except BaseException:
        os.close(fd)
        raise


def recover_tail(spool: Spool, append: Callable[[bytes, int], int | None],
                 max_points: int) -> int:
    """Deliver into ``spool`` the records of a tail left by a dead process: exactly
    once (see the module doc). Returns the points recovered; leaves the file with
    everything covered."""
    path = spool.path / TAIL_FILE
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size <= HEADER_BYTES:
        path.unlink(missing_ok=True)
        return 0
    mm, fd = _map(path, size - HEADER_BYTES)
    tail: Tail | None = None
    try:
        magic, version, capacity = _FILE_HEADER.unpack_from(mm, 0)
        state = _read_state(mm)
        if magic != MAGIC or version != VERSION or capacity != size - HEADER_BYTES or (
                state is None):
            log.warning("tracker_client: spool %s: %s is not a tail this client wrote; "
                        "ignored", spool.path, TAIL_FILE)
            return 0
        if state.pending_seq and spool.last_seq >= state.pending_seq:
            state.covered = state.pending_end  # killed after step 2: that batch is in
        tail = Tail(mm, capacity, state, path, None)
        tail.write_pos = tail.valid_end()
        builder = ColumnBuilder()
        recovered = 0
        last_end = tail.covered

        def cut(end: int) -> None:
            nonlocal recovered
            payload, points = builder.build()
            if points:
                tail.begin(spool.last_seq + 1, end)
                if append(payload, points) is not None:
                    recovered += points
            tail.commit(end)

        for kind, rec, end in tail.read():
            if kind == KIND_SCALARS:
                builder.add_scalars(*rec)
            else:
                if builder.points + int(rec[1].shape[0]) > max_points:
                    cut(last_end)
                builder.add_series(*rec)
            last_end = end
            if builder.points >= max_points:
                cut(end)
        if builder.points or tail.covered != last_end:
            cut(last_end)
        if recovered:
            log.info("tracker_client: spool %s: recovered %d point(s) logged by a process "
                     "that died before spooling them", spool.path, recovered)
        return recovered
    finally:
        if tail is not None:
            tail.close()
        with contextlib.suppress(BufferError, ValueError):
            mm.close()
        os.close(fd)


def create_tail(directory: Path, capacity: int, epoch: int) -> Tail:
    """A fresh ring in ``directory/tail.bin`` with its disk space allocated up front
    (writing into a sparse mapping on a full disk would SIGBUS the process). When the
    file cannot be made (no space, no mmap support), a memory-only ring does the same
    work without surviving a kill, and a warning says so."""
    capacity = max(64 << 10, capacity - capacity % 8)
    path = directory / TAIL_FILE
    tmp = directory / (TAIL_FILE + ".tmp")
    try:
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            zeros = bytes(1 << 20)
            left = HEADER_BYTES + capacity
            while left > 0:  # real blocks, not a hole (see above)
                n = os.write(fd, zeros[: min(left, len(zeros))])
                left -= n
        finally:
            os.close(fd)
        os.replace(tmp, path)
        mm, fd = _map(path, capacity)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        log.warning("tracker_client: cannot create %s in %s (%s); log() records are kept "
                    "in memory until spooled, so a killed process can lose its last "
                    "~%.0f ms of logging", TAIL_FILE, directory, exc, 100)
        mm = mmap.mmap(-1, HEADER_BYTES + capacity)
        return _init(Tail(mm, capacity, TailState(epoch=epoch), None, None))
    return _init(Tail(mm, capacity, TailState(epoch=epoch), path, fd))


def open_shared_writer(path: Path) -> Tail:
    """The writer's side of a tail another process reads (the sender process made the
    file and owns its state). Raises OSError / ValueError when ``path`` is not one."""
    size = path.stat().st_size
    mm, fd = _map(path, size - HEADER_BYTES)
    try:
        magic, version, capacity = _FILE_HEADER.unpack_from(mm, 0)
        state = _read_state(mm)
        if magic != MAGIC or version != VERSION or capacity != size - HEADER_BYTES or (
                state is None):
            raise ValueError(f"{path} is not a tail this client wrote")
        (published,) = _PUBLISHED.unpack_from(mm, _PUBLISHED_OFFSET)
        tail = Tail(mm, capacity, state, path, fd)
        tail.write_pos = max(state.covered, published)
        tail.shared = True
        return tail
    except BaseException:
        with contextlib.suppress(BufferError, ValueError):
            mm.close()
        os.close(fd)
        raise


def _init(tail: Tail) -> Tail:
    _FILE_HEADER.pack_into(tail._mm, 0, MAGIC, VERSION, tail.capacity)
    tail._write_state(covered=0, pending_seq=0, pending_end=0)
    return tail


def remove_tail(directory: Path) -> None:
    """Delete a tail file (everything in it is covered)."""
    with contextlib.suppress(FileNotFoundError):
        (directory / TAIL_FILE).unlink()


def tail_backlog(directory: Path) -> int:
    """Records in ``directory``'s tail that are not spooled yet (read-only: what the
    next open of the spool will recover, before the pending-batch check)."""
    path = directory / TAIL_FILE
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size <= HEADER_BYTES:
        return 0
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), size, mmap.MAP_SHARED, mmap.PROT_READ)
    tail: Tail | None = None
    try:
        state = _read_state(mm)
        magic, _version, capacity = _FILE_HEADER.unpack_from(mm, 0)
        if state is None or magic != MAGIC or capacity != size - HEADER_BYTES:
            return 0
        tail = Tail(mm, capacity, state, path, None)
        tail.write_pos = tail.valid_end()
        return sum(1 for _ in tail.read())
    finally:
        if tail is not None:
            tail.close()
        with contextlib.suppress(BufferError, ValueError):
            mm.close()
