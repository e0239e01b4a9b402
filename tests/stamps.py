#!/usr/bin/env python3
"""Attention's blocks in one profiled fused step, block by block.

usage: tests/stamps.py STAMPS.bin...

Reads what tests/gpu_bench_decode writes with BITNET_STAMPS_DIR set (two ints,
n_blocks and n_stamps, then n_blocks rows of n_stamps uint64 ns: per layer and
phase BITNET__FUSED_MARKS = 10 marks, then one at the end; in the attention phase
mark 0 is the phase's start, 1 q loaded, 2 the scores, 3 the partials stored, 4
the combining done).  Prints, per layer (mean over the layers), how far apart the
attention blocks start, the median block's steps, how far the last block's
partials trail the median's, and the combining after them: whether a unit's
blocks wait for a slow slice or for their own chain.  Python's standard library
only."""
import statistics
import struct
import sys

MARKS = 10


def attention(path):
    with open(path, "rb") as f:
        data = f.read()
    n_blocks, n_stamps = struct.unpack_from("ii", data)
    v = struct.unpack_from("%dQ" % (n_blocks * n_stamps), data, 8)
    n_layer = (n_stamps - 1) // (5 * MARKS)

    def mark(block, layer, i):
        return v[block * n_stamps + MARKS * (5 * layer + 1) + i]

    # the blocks with an attention unit: their partials were stamped in every layer
    active = [b for b in range(n_blocks) if all(mark(b, l, 3) for l in range(n_layer))]
    rows = {k: [] for k in ("starts spread", "q (median block)", "scores", "softmax, V, partials",
                            "last partials after the median", "combining (median block)",
                            "last block done after the last partials")}
    for l in range(n_layer):
        st, q, sc, pa, en = ([mark(b, l, i) for b in active] for i in range(5))
        rows["starts spread"].append(max(st) - min(st))
        rows["q (median block)"].append(statistics.median(b - a for a, b in zip(st, q)))
        rows["scores"].append(statistics.median(b - a for a, b in zip(q, sc)))
        rows["softmax, V, partials"].append(statistics.median(b - a for a, b in zip(sc, pa)))
        rows["last partials after the median"].append(max(pa) - statistics.median(pa))
        rows["combining (median block)"].append(statistics.median(b - a for a, b in zip(pa, en)))
        rows["last block done after the last partials"].append(max(en) - max(pa))
    print("%s: %d blocks, %d with attention, %d layers; us a layer (mean over the layers)" % (path, n_blocks, len(active), n_layer))
    for k, xs in rows.items():
        print("  %-40s %6.2f" % (k, statistics.mean(xs) / 1000.0))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for p in sys.argv[1:]:
        attention(p)
