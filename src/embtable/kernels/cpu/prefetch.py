"""A software prefetch for the kernels that visit rows in random order: enough loads in
flight to hide DRAM latency, the rows still cached when their turn comes."""

from __future__ import annotations

import numba as nb
from llvmlite import ir
from numba.core import cgutils
from numba.extending import intrinsic

#: How many places ahead the kernels prefetch the row they will visit.
AHEAD = 8
#: The gather's distance: it does nothing but copy rows, so it can keep more in flight
#: (measured on 2 cores, 64-float rows fetched from memory: 1024 rows in 25 us at 16
#: against 32 us at 8; no change from 4096 rows up).
GATHER_AHEAD = 16
CACHE_LINE = 64


def prefetch_hint(builder: ir.IRBuilder, address: ir.Value) -> None:
    """Emit a hint to load the cache line holding `address` (an i8 pointer) and keep it."""
    i32 = ir.IntType(32)
    hint = builder.module.declare_intrinsic(
        "llvm.prefetch", [cgutils.voidptr_t], ir.FunctionType(ir.VoidType(), [cgutils.voidptr_t, i32, i32, i32]))
    builder.call(hint, [address, i32(0), i32(3), i32(1)])  # read, keep cached


@intrinsic
def prefetch_bytes(typingctx, array, offset, nbytes):
    """Hint the CPU to start loading the cache lines of bytes ``[offset, offset + nbytes)``
    of `array`'s data (in range, `nbytes` > 0). A hint only: it never faults and changes no
    value."""

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        intp = context.get_value_type(nb.types.intp)
        offset = context.cast(builder, args[1], signature.args[1], nb.types.intp)
        length = context.cast(builder, args[2], signature.args[2], nb.types.intp)
        start = builder.gep(builder.bitcast(data, cgutils.voidptr_t), [offset])
        with cgutils.for_range_slice(builder, intp(0), length, intp(CACHE_LINE)) as (at, _):
            prefetch_hint(builder, builder.gep(start, [at]))
        # the last line, where the range straddles one more
        prefetch_hint(builder, builder.gep(start, [builder.sub(length, intp(1))]))
        return context.get_dummy_value()

    return nb.types.void(array, offset, nbytes), codegen


@nb.njit(cache=True, inline="always")
def prefetch_row(table, row):
    """Prefetch ``table[row]`` of a C-contiguous 2-D `table`."""
    prefetch_bytes(table, row * table.strides[0], table.strides[0])


@nb.njit(cache=True, inline="always")
def ahead(rows, i, distance=AHEAD):
    """The row `distance` places after place `i` of `rows` (the last row near the end)."""
    return rows[min(i + distance, rows.shape[0] - 1)]
