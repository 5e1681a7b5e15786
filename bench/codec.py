"""Chunk codec benchmark: bytes per point and encode/decode throughput (CPU only).

``python -m bench codec [--json PATH] [--points N]`` encodes chunks of several data
shapes with ``tracker_server.domain.codec`` and reports, per shape: bytes per point per
column (each column's transformed bytes compressed on its own) and for the whole
payload, encode and decode throughput in points/s on one core, and the same for the
alternatives the codec chose between (values XOR'd or only shuffled, level 1 or 3,
zstd or blosc2 for every chunk size), plus the size of a byte-aligned format without a
general-purpose compressor (what a plain SQL function could decode). Throughput is in
CPU time of the process, one thread.
Every payload is decoded and compared bit for bit with its input.

Shapes:

- ``ingest``: the ingest bench's points (``bench.workload``: 20 keys, trend + noise
  float64, steps 0, 1, ..., wall time 1 ms per step from the batch's send time), one
  key per chunk, ~2,500 points per chunk (the default workload's chunk size).
- ``ingest_ms``: the same with wall times at millisecond resolution.
- ``lowfreq``: 31-point chunks (a compacted lowfreq series: 1 step/s, wall times with
  millisecond jitter).
- ``float32_loss``: a loss computed in float32, stored as float64.
- ``constant``: a learning rate held constant (steps with stride 10).
- ``random_f64``: fully random float64 bit patterns (the worst case), irregular steps.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import zstandard

from bench.workload import StreamPoints, Workload
from tracker_server.domain import codec

Chunk = tuple[np.ndarray, np.ndarray, np.ndarray]


def _ingest_chunks(points: int, ms: bool = False, chunk: int = 2500) -> list[Chunk]:
    w = Workload()
    sp = StreamPoints(w, 0)
    spb = w.steps_per_batch
    steps_total = max(chunk, points // w.keys)
    cols: list[list[np.ndarray]] = [[], [], []]
    now = 1_764_000_000_000_000_000
    for first in range(0, steps_total, spb):
        b = sp.batch(first, min(spb, steps_total - first), wall_ns=now)
        # The client sends a batch about every 100 steps of ~1 ms, plus scheduling noise.
        now += spb * 1_000_000 + int(np.random.default_rng(first).integers(0, 50_000))
        cols[0].append(b.key_index)
        cols[1].append(np.stack([b.steps, b.values.view(np.int64), b.wall_ns]))
    key = np.concatenate(cols[0])
    data = np.concatenate(cols[1], axis=1)
    out: list[Chunk] = []
    for k in range(w.keys):
        sel = data[:, key == k]
        for s in range(0, sel.shape[1], chunk):
            part = sel[:, s : s + chunk]
            wall = part[2] // 1_000_000 * 1_000_000 if ms else part[2]
            out.append((part[0].copy(), part[1].copy().view(np.float64), wall.copy()))
    return out


def _lowfreq_chunks(points: int) -> list[Chunk]:
    rng = np.random.default_rng(1)
    out: list[Chunk] = []
    n = 31
    for c in range(max(1, points // n)):
        steps = np.arange(n, dtype=np.int64)
        wall = (1_764_000_000_000_000_000 + c * 1_000_000_000 + steps * 1_000_000_000
                + rng.integers(0, 2_000_000, n))
        values = 1.0 / np.sqrt(1.0 + steps / 1000.0) + rng.standard_normal(n) * 0.01
        out.append((steps, values, wall.astype(np.int64)))
    return out


def _float32_chunks(points: int, chunk: int = 2500) -> list[Chunk]:
    rng = np.random.default_rng(2)
    out: list[Chunk] = []
    for c in range(max(1, points // chunk)):
        steps = np.arange(c * chunk, (c + 1) * chunk, dtype=np.int64)
        loss = (2.0 / np.sqrt(1.0 + steps / 1000.0)).astype(np.float32)
        loss += rng.standard_normal(chunk).astype(np.float32) * np.float32(0.01)
        wall = 1_764_000_000_000_000_000 + steps * 1_000_000
        out.append((steps, loss.astype(np.float64), wall))
    return out


def _constant_chunks(points: int, chunk: int = 2500) -> list[Chunk]:
    out: list[Chunk] = []
    for c in range(max(1, points // chunk)):
        steps = np.arange(c * chunk, (c + 1) * chunk, dtype=np.int64) * 10
        wall = 1_764_000_000_000_000_000 + steps * 1_000_000
        out.append((steps, np.full(chunk, 3e-4), wall))
    return out


def _random_chunks(points: int, chunk: int = 2500) -> list[Chunk]:
    rng = np.random.default_rng(3)
    out: list[Chunk] = []
    for _ in range(max(1, points // chunk)):
        steps = np.cumsum(rng.integers(1, 5, chunk)).astype(np.int64)
        wall = rng.integers(-(2**63), 2**63 - 1, chunk, dtype=np.int64)
        bits = rng.integers(0, 2**64 - 1, chunk, dtype=np.uint64, endpoint=True)
        out.append((steps, bits.view(np.float64), wall))
    return out


SHAPES: dict[str, Callable[[int], list[Chunk]]] = {
    "ingest": _ingest_chunks,
    "ingest_ms": lambda p: _ingest_chunks(p, ms=True),
    "lowfreq": _lowfreq_chunks,
    "float32_loss": _float32_chunks,
    "constant": _constant_chunks,
    "random_f64": _random_chunks,
}


def _column_bytes(chunks: list[Chunk], level: int) -> dict[str, float]:
    """Bytes per point of each column's transformed bytes, compressed on its own."""
    comp = zstandard.ZstdCompressor(level=level)
    size = {"steps": 0, "wall_ns": 0, "values": 0}
    for steps, values, wall in chunks:
        with np.errstate(over="ignore"):
            if codec._regular_stride(codec._delta(steps)) is None:
                size["steps"] += len(comp.compress(codec._shuffle(
                    codec._zigzag(codec._delta(steps)))))
            else:
                size["steps"] += 16
            size["wall_ns"] += len(comp.compress(codec._shuffle(
                codec._zigzag(codec._delta(codec._delta(wall))))))
        size["values"] += len(comp.compress(codec._shuffle(values.view(np.uint64))))
    points = sum(c[0].shape[0] for c in chunks)
    return {k: v / points for k, v in size.items()}


def _stripped_bytes(u: np.ndarray) -> int:
    """Bytes of ``u`` with each element's leading and trailing zero bytes dropped, plus a
    one-byte (lead, length) header per element."""
    b = u.astype("<u8").view(np.uint8).reshape(-1, 8)
    nz = b != 0
    any_nz = nz.any(axis=1)
    first = np.argmax(nz, axis=1)
    last = 7 - np.argmax(nz[:, ::-1], axis=1)
    return int(np.where(any_nz, last - first + 1, 0).sum()) + int(u.shape[0])


def _byte_aligned_bytes(chunks: list[Chunk]) -> float:
    """Bytes per point of a format without a general-purpose compressor (what a plain
    SQL decode function could undo): regular steps as first + stride, otherwise and for
    the wall times' delta-of-delta and the XOR'd values, byte-aligned stripping of zero
    bytes with a header byte per element (Gorilla at byte granularity)."""
    total = 0
    for steps, values, wall in chunks:
        with np.errstate(over="ignore"):
            if codec._regular_stride(codec._delta(steps)) is None:
                total += _stripped_bytes(codec._zigzag(codec._delta(steps)))
            else:
                total += 16
            total += _stripped_bytes(codec._zigzag(codec._delta(codec._delta(wall))))
        bits = values.view(np.uint64)
        x = bits.copy()
        np.bitwise_xor(bits[1:], bits[:-1], out=x[1:])
        total += _stripped_bytes(x) + 8
    return total / sum(int(c[0].shape[0]) for c in chunks)


def _measure(chunks: list[Chunk], level: int, values_mode: int,
             repeat: int = 1, compressor: int | None = None,
             blosc2_codec: str = "zstd") -> dict[str, Any]:
    """Size and throughput; the best of ``repeat`` passes. Timed in CPU time of this
    process (``time.process_time``; the codec runs on one thread), so other load on a
    shared box does not count as codec time."""
    points = sum(c[0].shape[0] for c in chunks)
    enc_s = dec_s = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        payloads = [codec.encode(s, v, w, level=level, values_mode=values_mode,
                                 compressor=compressor, blosc2_codec=blosc2_codec)
                    for s, v, w in chunks]
        enc_s = min(enc_s, time.process_time() - t)
        t = time.process_time()
        decoded = [codec.decode(p) for p in payloads]
        dec_s = min(dec_s, time.process_time() - t)
    for (s, v, w), d in zip(chunks, decoded, strict=True):
        if not (np.array_equal(s, d.steps) and np.array_equal(w, d.wall_ns)
                and np.array_equal(v.view(np.uint64), d.values.view(np.uint64))):
            raise AssertionError("decoded chunk differs from its input")
    total = sum(len(p) for p in payloads)
    return {
        "bytes_per_point": total / points,
        "encode_points_per_s": points / enc_s,
        "decode_points_per_s": points / dec_s,
    }


def run(points: int) -> dict[str, Any]:
    """All shapes: chosen encoding and the alternatives."""
    out: dict[str, Any] = {}
    for name, make in SHAPES.items():
        chunks = make(points)
        n = sum(c[0].shape[0] for c in chunks)
        chosen = _measure(chunks, codec.DEFAULT_LEVEL, codec.DEFAULT_VALUES_MODE, repeat=3)
        out[name] = {
            "points": n,
            "chunks": len(chunks),
            "raw_bytes_per_point": 24.0,
            **chosen,
            "columns_bytes_per_point": _column_bytes(chunks, codec.DEFAULT_LEVEL),
            "alternatives": {
                "values_xor_level1": _measure(chunks, 1, codec.VALUES_XOR),
                "level3": _measure(chunks, 3, codec.VALUES_PLAIN),
                "zstd_only_level1": _measure(chunks, 1, codec.VALUES_PLAIN,
                                             compressor=codec.BODY_ZSTD),
                "blosc2_only_level1": _measure(chunks, 1, codec.VALUES_PLAIN,
                                               compressor=codec.BODY_BLOSC2),
                "blosc2_lz4": _measure(chunks, 1, codec.VALUES_PLAIN, blosc2_codec="lz4"),
            },
            "no_compressor_bytes_per_point": _byte_aligned_bytes(chunks),
        }
    return out


def render(res: dict[str, Any]) -> str:
    """A table for the terminal."""
    lines = [f"{'shape':<13} {'B/pt':>6} {'steps':>6} {'wall':>6} {'values':>6} "
             f"{'enc Mpt/s':>9} {'dec Mpt/s':>9} | {'xor':>5} {'lvl3':>5} "
             f"{'zstd':>5} {'enc':>5} {'dec':>5} | {'blosc2':>6} {'enc':>5} {'dec':>5} | "
             f"{'lz4':>5} {'enc':>5} {'dec':>5} | {'no-zstd':>7}"]
    for name, r in res.items():
        c = r["columns_bytes_per_point"]
        a = r["alternatives"]
        z, b, lz = a["zstd_only_level1"], a["blosc2_only_level1"], a["blosc2_lz4"]
        lines.append(
            f"{name:<13} {r['bytes_per_point']:6.2f} {c['steps']:6.2f} {c['wall_ns']:6.2f} "
            f"{c['values']:6.2f} {r['encode_points_per_s'] / 1e6:9.1f} "
            f"{r['decode_points_per_s'] / 1e6:9.1f} | "
            f"{a['values_xor_level1']['bytes_per_point']:5.2f} "
            f"{a['level3']['bytes_per_point']:5.2f} "
            f"{z['bytes_per_point']:5.2f} {z['encode_points_per_s'] / 1e6:5.1f} "
            f"{z['decode_points_per_s'] / 1e6:5.1f} | "
            f"{b['bytes_per_point']:6.2f} {b['encode_points_per_s'] / 1e6:5.1f} "
            f"{b['decode_points_per_s'] / 1e6:5.1f} | "
            f"{lz['bytes_per_point']:5.2f} {lz['encode_points_per_s'] / 1e6:5.1f} "
            f"{lz['decode_points_per_s'] / 1e6:5.1f} | "
            f"{r['no_compressor_bytes_per_point']:7.2f}")
    lines.append("B/pt, enc, dec: the codec as configured (zstd below 512 points per chunk, "
                 "blosc2 from 512); steps/wall/values: each column alone with zstd; "
                 "xor: values XOR'd first; lvl3: compression level 3; zstd / blosc2: that "
                 "compressor for every chunk; lz4: LZ4 inside blosc2; no-zstd: byte-aligned, "
                 "no compressor (what plain SQL could decode). Throughput in M points/s of "
                 "CPU time, one core.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bench codec``."""
    p = argparse.ArgumentParser(prog="python -m bench codec", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", metavar="PATH", help="write the results here")
    p.add_argument("--points", type=int, default=500_000,
                   help="points per shape (default 500,000)")
    args = p.parse_args(argv)
    if args.points < 1:
        p.error("--points must be at least 1")
    shapes = run(args.points)
    res = {"bench": "codec", "codec_version": codec.VERSION,
           "level": codec.DEFAULT_LEVEL, "blosc2_min_points": codec.BLOSC2_MIN_POINTS,
           "shapes": shapes}
    print(render(shapes))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0
