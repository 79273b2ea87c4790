"""Sums of 8-bit code rows kept in vector registers: the inner loop of a quantized sum- or
mean-pool, as `row_sums.tile_sum` is a float bag's. numba keeps a bag's running sum in
memory (loaded and stored again for every row); here each tile of the sum lives in vector
registers from the bag's first row to its last and is stored once.
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from .prefetch import CACHE_LINE, GATHER_AHEAD, prefetch_hint
from .row_sums import splat

LANES = 8  # float32 lanes of one AVX2 register
TILE_VECTORS = 8  # accumulators per tile: half of AVX2's 16 vector registers
TILE_COLUMNS = LANES * TILE_VECTORS


@intrinsic
def code_tile_sum(typingctx, packed, rows, factors, start, stop, dst, col, vectors):
    """``dst[col:col + 8 * vectors]`` = the sum over the positions ``i`` in ``[start, stop)``
    whose ``factors[i]`` is not 0 of ``factors[i] * packed[rows[i], col:col + 8 * vectors]``
    (8-bit codes widened to float32), summed in position order. `vectors` is 1 to
    `TILE_VECTORS`; `packed` (uint8, 2-D), `rows` (int64), `factors` and `dst` (float32)
    are C-contiguous."""
    arrays = (packed, rows, factors, dst)
    if not (all(isinstance(a, types.Array) and a.layout == "C" for a in arrays) and packed.ndim == 2
            and packed.dtype == types.uint8 and factors.dtype == types.float32 and dst.dtype == types.float32):
        return None
    return types.void(packed, rows, factors, start, stop, dst, col, vectors), _codegen


def _codegen(context, builder, signature, args):
    packed, rows, factors, dst = (context.make_array(signature.args[k])(context, builder, args[k]) for k in (0, 1, 2, 5))
    intp = context.get_value_type(types.intp)

    def argument(k: int) -> ir.Value:
        return context.cast(builder, args[k], signature.args[k], types.intp)

    start, stop, col, vectors = argument(3), argument(4), argument(6), argument(7)
    floats = ir.VectorType(ir.FloatType(), LANES)
    codes = ir.VectorType(ir.IntType(8), LANES)
    row_bytes = cgutils.unpack_tuple(builder, packed.strides, 2)[0]
    last_position = builder.sub(cgutils.unpack_tuple(builder, rows.shape, 1)[0], intp(1))
    tile_start = builder.gep(packed.data, [col])
    out = builder.bitcast(builder.gep(dst.data, [col]), floats.as_pointer())

    def row_address(position: ir.Value) -> ir.Value:
        row = builder.load(builder.gep(rows.data, [position]))
        return builder.gep(tile_start, [builder.mul(row, row_bytes)])

    def emit_tile(count: int) -> None:
        """The loop for a tile of `count` vectors."""
        sums = [cgutils.alloca_once_value(builder, ir.Constant(floats, None)) for _ in range(count)]
        with cgutils.for_range_slice(builder, start, stop, intp(1)) as (i, _):
            upcoming = builder.add(i, intp(GATHER_AHEAD))
            upcoming = row_address(builder.select(builder.icmp_signed("<", upcoming, last_position),
                                                  upcoming, last_position))
            for at in range(0, count * LANES, CACHE_LINE):
                prefetch_hint(builder, builder.gep(upcoming, [intp(at)]))
            factor = builder.load(builder.gep(factors.data, [i]))
            kept = builder.fcmp_ordered("!=", factor, ir.Constant(ir.FloatType(), 0.0))
            with builder.if_then(kept, likely=True):
                source = builder.bitcast(row_address(i), codes.as_pointer())
                scale = splat(builder, factor, LANES)
                for k, total in enumerate(sums):
                    widened = builder.uitofp(builder.load(builder.gep(source, [intp(k)]), align=1), floats)
                    builder.store(builder.fadd(builder.load(total), builder.fmul(widened, scale)), total)
        for k in range(count):
            builder.store(builder.load(sums[k]), builder.gep(out, [intp(k)]), align=4)

    # One loop per tile width, so each keeps its sums in registers.
    done = builder.append_basic_block("code_tile_sum.done")
    switch = builder.switch(vectors, done)
    for count in range(1, TILE_VECTORS + 1):
        case = builder.append_basic_block(f"code_tile_sum.{count}")
        switch.add_case(intp(count), case)
        builder.position_at_end(case)
        emit_tile(count)
        builder.branch(done)
    builder.position_at_end(done)
    return context.get_dummy_value()
