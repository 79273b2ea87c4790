"""Sums of quantized code rows (8 or 4 bits) kept in vector registers: the inner loop of a
quantized sum- or mean-pool, as `row_sums.tile_sum` is a float bag's. numba keeps a bag's running sum in
memory (loaded and stored again for every row); here each tile of the sum lives in vector
registers from the bag's first row to its last and is stored once.
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from .prefetch import CACHE_LINE, GATHER_AHEAD, prefetch_hint
from .row_sums import splat, switch_over_tiles

LANES = 8  # float32 lanes of one AVX2 register
TILE_VECTORS = 8  # accumulators per tile: half of AVX2's 16 vector registers
TILE_COLUMNS = LANES * TILE_VECTORS


@intrinsic
def code_tile_sum(typingctx, packed, bits, rows, weights, padding_idx, scale_at, mean, start, stop, out, bag, col,
                  vectors):
    """``out[bag, col:col + 8 * vectors]`` = the sum over the positions ``i`` in ``[start, stop)``
    whose ``rows[i]`` is not `padding_idx` of ``weights[i]`` (1 when `weights` is empty)
    times the values of row ``rows[i]`` of `packed` in columns ``col:col + 8 * vectors``:
    its codes (`bits` 8: a byte each; 4: two a byte, the even column's in the low nibble,
    `col` even) widened to float32 times the float32 scale at byte `scale_at`, plus the
    float32 offset after it; the codes' products summed in position order and the offsets
    apart, then added. With `mean`, divided by the positions kept (when more than one).
    `vectors` is 1 to `TILE_VECTORS`; `packed` (uint8, 2-D), `rows` (int64), `weights` and
    `out` (float32, 2-D) are C-contiguous."""
    arrays = (packed, rows, weights, out)
    integers = (bits, padding_idx, scale_at, start, stop, bag, col, vectors)
    if not (all(isinstance(a, types.Array) and a.layout == "C" for a in arrays) and packed.ndim == out.ndim == 2
            and packed.dtype == types.uint8 and rows.dtype == types.int64 and weights.dtype == types.float32
            and out.dtype == types.float32 and isinstance(mean, types.Boolean)
            and all(isinstance(n, types.Integer) for n in integers)):
        return None
    arguments = (packed, bits, rows, weights, padding_idx, scale_at, mean, start, stop, out, bag, col, vectors)
    return types.void(*arguments), _codegen


def _codegen(context, builder, signature, args):
    packed, rows, weights, sums_out = (context.make_array(signature.args[k])(context, builder, args[k])
                                  for k in (0, 2, 3, 9))
    intp = context.get_value_type(types.intp)

    def argument(k: int) -> ir.Value:
        return context.cast(builder, args[k], signature.args[k], types.intp)

    bits, padding, scale_at = argument(1), argument(4), argument(5)
    start, stop, bag, col, vectors = argument(7), argument(8), argument(10), argument(11), argument(12)
    mean = context.cast(builder, args[6], signature.args[6], types.boolean)
    single = ir.FloatType()
    floats = ir.VectorType(single, LANES)
    row_bytes = cgutils.unpack_tuple(builder, packed.strides, 2)[0]
    last_position = builder.sub(cgutils.unpack_tuple(builder, rows.shape, 1)[0], intp(1))
    weighted = builder.icmp_signed(">", cgutils.unpack_tuple(builder, weights.shape, 1)[0], intp(0))
    out_start = builder.add(builder.mul(bag, cgutils.unpack_tuple(builder, sums_out.shape, 2)[1]), col)
    out = builder.bitcast(builder.gep(sums_out.data, [out_start]), floats.as_pointer())
    fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(floats, [floats] * 3), f"llvm.fma.v{LANES}f32")
    offset_sum = cgutils.alloca_once_value(builder, ir.Constant(single, 0.0))
    kept = cgutils.alloca_once_value(builder, intp(0))

    def row_start(position: ir.Value) -> ir.Value:
        row = builder.load(builder.gep(rows.data, [position]))
        return row, builder.gep(packed.data, [builder.mul(row, row_bytes)])

    def emit_tile(count: int, nibbles: bool) -> None:
        """The loop for a tile of `count` vectors of 8-bit (or, with `nibbles`, 4-bit) codes."""
        width = LANES // 2 if nibbles else LANES  # bytes of codes a vector takes
        codes = ir.VectorType(ir.IntType(8), width)
        first_code = builder.sdiv(col, intp(2)) if nibbles else col
        sums = [cgutils.alloca_once_value(builder, ir.Constant(floats, None)) for _ in range(count)]
        with cgutils.for_range_slice(builder, start, stop, intp(1)) as (i, _):
            upcoming = builder.add(i, intp(GATHER_AHEAD))
            _, upcoming = row_start(builder.select(builder.icmp_signed("<", upcoming, last_position),
                                                   upcoming, last_position))
            for at in range(0, count * width, CACHE_LINE):
                prefetch_hint(builder, builder.gep(upcoming, [builder.add(first_code, intp(at))]))
            prefetch_hint(builder, builder.gep(upcoming, [scale_at]))
            row, base = row_start(i)
            with builder.if_then(builder.icmp_signed("!=", row, padding), likely=True):
                factors = builder.bitcast(builder.gep(base, [scale_at]), single.as_pointer())
                weight = builder.select(weighted, builder.load(builder.gep(weights.data, [i])), single(1.0))
                scale = splat(builder, builder.fmul(builder.load(factors, align=1), weight), LANES)
                offset = builder.fmul(builder.load(builder.gep(factors, [intp(1)]), align=1), weight)
                builder.store(builder.fadd(builder.load(offset_sum), offset), offset_sum)
                builder.store(builder.add(builder.load(kept), intp(1)), kept)
                source = builder.bitcast(builder.gep(base, [first_code]), codes.as_pointer())
                for k, total in enumerate(sums):
                    loaded = builder.load(builder.gep(source, [intp(k)]), align=1)
                    widened = builder.uitofp(_unpacked(builder, loaded) if nibbles else loaded, floats)
                    builder.store(builder.call(fma, [widened, scale, builder.load(total)]), total)
        scale = splat(builder, _divisor(builder, mean, builder.load(kept)), LANES)
        offsets = splat(builder, builder.load(offset_sum), LANES)
        for k in range(count):
            total = builder.fmul(builder.fadd(builder.load(sums[k]), offsets), scale)
            builder.store(total, builder.gep(out, [intp(k)]), align=4)

    selector = builder.add(builder.mul(vectors, intp(2)), builder.zext(builder.icmp_signed("==", bits, intp(4)), intp))
    shapes = [(count, nibbles) for count in range(1, TILE_VECTORS + 1) for nibbles in (False, True)]
    switch_over_tiles(builder, "code_tile_sum", selector, shapes, emit_tile)
    return context.get_dummy_value()


def _divisor(builder: ir.IRBuilder, mean: ir.Value, kept: ir.Value) -> ir.Value:
    """What a tile's sums are multiplied by: ``float32(1.0 / kept)`` (the reciprocal taken in
    float64) for a mean of more than one position, else 1."""
    reciprocal = builder.fptrunc(builder.fdiv(ir.DoubleType()(1.0), builder.sitofp(kept, ir.DoubleType())),
                                 ir.FloatType())
    averaged = builder.and_(mean, builder.icmp_signed(">", kept, kept.type(1)))
    return builder.select(averaged, reciprocal, ir.FloatType()(1.0))


def _unpacked(builder: ir.IRBuilder, packed: ir.Value) -> ir.Value:
    """The 8 codes of 4 bytes (the low nibble of each byte first) as ``<8 x i8>``."""
    low = builder.and_(packed, ir.Constant(packed.type, [15] * 4))
    high = builder.lshr(packed, ir.Constant(packed.type, [4] * 4))
    interleaved = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0, 4, 1, 5, 2, 6, 3, 7])
    return builder.shuffle_vector(low, high, interleaved)
