"""Sums of table rows kept in vector registers: the inner loop of a sum- or mean-pool.

numba keeps a bag's running sum in memory (the row it writes might alias the table it
reads, so each step loads and stores it again), which left the pooled sum at about half the
speed of PyTorch's FBGEMM kernels, generated per row length. `tile_sum` is written in LLVM
IR instead: the sum of one tile of a bag's rows (up to `TILE_VECTORS` vectors of
`VECTOR_BYTES`) lives in vector registers from the bag's first row to its last and is
stored once; a tile narrower than a whole number of vectors ends in a masked vector.
"""

from __future__ import annotations

from typing import Callable

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from .prefetch import CACHE_LINE, GATHER_AHEAD, prefetch_hint

#: One AVX2 register (LLVM splits a vector into narrower registers where there are no
#: wider ones).
VECTOR_BYTES = 32
#: Accumulators per tile: half of AVX2's 16 vector registers, the others hold loads.
TILE_VECTORS = 8
#: The widest tile, in bytes of a row.
TILE_BYTES = VECTOR_BYTES * TILE_VECTORS

_I32 = ir.IntType(32)
_FLOATS = (types.float32, types.float64)


@intrinsic
def tile_sum(typingctx, table, rows, ids, start, stop, padding_idx, weights, dst, col, width):
    """``dst[col:col + width]`` = the sum over the positions ``i`` in ``[start, stop)`` whose
    ``ids[i]`` is not `padding_idx` of ``weights[i] * table[rows[i], col:col + width]``
    (empty `weights` mean 1), summed in position order; returns how many positions were
    kept. `width` is 1 to ``TILE_BYTES // table.itemsize``; every array is C-contiguous and
    `table`, `weights` and `dst` share one float dtype."""
    arrays = (table, rows, ids, weights, dst)
    if not (all(isinstance(a, types.Array) and a.layout == "C" for a in arrays) and table.ndim == 2
            and table.dtype in _FLOATS and weights.dtype == table.dtype and dst.dtype == table.dtype):
        return None
    return types.intp(table, rows, ids, start, stop, padding_idx, weights, dst, col, width), _codegen


def _codegen(context, builder, signature, args):
    table_type, rows_type, ids_type = signature.args[:3]
    table, rows, ids, weights, dst = (context.make_array(signature.args[k])(context, builder, args[k])
                                      for k in (0, 1, 2, 6, 7))
    intp = context.get_value_type(types.intp)

    def argument(k: int, to: types.Type) -> ir.Value:
        return context.cast(builder, args[k], signature.args[k], to)

    def element(array, dtype: types.Type, i: ir.Value, to: types.Type) -> ir.Value:
        return context.cast(builder, builder.load(builder.gep(array.data, [i])), dtype, to)

    float_type = context.get_value_type(table_type.dtype)
    itemsize = context.get_abi_sizeof(float_type)
    lanes = VECTOR_BYTES // itemsize
    vector = ir.VectorType(float_type, lanes)
    start, stop, padding = argument(3, types.intp), argument(4, types.intp), argument(5, types.int64)
    col, width = argument(8, types.intp), argument(9, types.intp)
    row_bytes = cgutils.unpack_tuple(builder, table.strides, 2)[0]
    last_position = builder.sub(cgutils.unpack_tuple(builder, rows.shape, 1)[0], intp(1))
    weighted = builder.icmp_signed(">", cgutils.unpack_tuple(builder, weights.shape, 1)[0], intp(0))
    tile_start = builder.gep(builder.bitcast(table.data, cgutils.voidptr_t), [builder.mul(col, intp(itemsize))])
    out = builder.bitcast(builder.gep(dst.data, [col]), vector.as_pointer())
    tail = builder.srem(width, intp(lanes))
    lane_numbers = ir.Constant(ir.VectorType(_I32, lanes), list(range(lanes)))
    tail_mask = builder.icmp_signed("<", lane_numbers, splat(builder, builder.trunc(tail, _I32), lanes))
    masked_load, masked_store = _masked_memory(builder.module, vector)
    kept_count = cgutils.alloca_once_value(builder, intp(0))

    def row_address(position: ir.Value) -> ir.Value:
        return builder.gep(tile_start, [builder.mul(element(rows, rows_type.dtype, position, types.intp), row_bytes)])

    def emit_tile(vectors: int, masked: bool) -> None:
        """The loop for a tile of `vectors` whole vectors and, if `masked`, one partial."""
        sums = [cgutils.alloca_once_value(builder, ir.Constant(vector, None)) for _ in range(vectors + masked)]
        with cgutils.for_range_slice(builder, start, stop, intp(1)) as (i, _):
            upcoming = builder.add(i, intp(GATHER_AHEAD))
            upcoming = row_address(builder.select(builder.icmp_signed("<", upcoming, last_position),
                                                  upcoming, last_position))
            for at in range(0, len(sums) * VECTOR_BYTES, CACHE_LINE):
                prefetch_hint(builder, builder.gep(upcoming, [intp(at)]))
            kept = builder.icmp_signed("!=", element(ids, ids_type.dtype, i, types.int64), padding)
            with builder.if_then(kept, likely=True):
                source = builder.bitcast(row_address(i), vector.as_pointer())
                values = [builder.load(builder.gep(source, [intp(k)]), align=itemsize) for k in range(vectors)]
                if masked:
                    values.append(builder.call(masked_load, [builder.gep(source, [intp(vectors)]), _I32(itemsize),
                                                             tail_mask, ir.Constant(vector, None)]))
                with builder.if_else(weighted) as (scaled, plain):
                    with scaled:
                        weight = splat(builder, builder.load(builder.gep(weights.data, [i])), lanes)
                        for total, value in zip(sums, values):
                            builder.store(builder.fadd(builder.load(total), builder.fmul(value, weight)), total)
                    with plain:
                        for total, value in zip(sums, values):
                            builder.store(builder.fadd(builder.load(total), value), total)
                builder.store(builder.add(builder.load(kept_count), intp(1)), kept_count)
        for k in range(vectors):
            builder.store(builder.load(sums[k]), builder.gep(out, [intp(k)]), align=itemsize)
        if masked:
            builder.call(masked_store, [builder.load(sums[vectors]), builder.gep(out, [intp(vectors)]),
                                        _I32(itemsize), tail_mask])

    # One loop per tile shape, so each keeps its sums in registers: the key is twice the
    # whole vectors, plus one for a partial vector.
    shapes = [(vectors, masked) for vectors in range(TILE_VECTORS + 1) for masked in (False, True)
              if (vectors or masked) and not (vectors == TILE_VECTORS and masked)]
    selector = builder.add(builder.mul(builder.sdiv(width, intp(lanes)), intp(2)),
                           builder.zext(builder.icmp_signed("!=", tail, intp(0)), intp))
    switch_over_tiles(builder, "tile_sum", selector, shapes, emit_tile)
    return builder.load(kept_count)


def switch_over_tiles(builder: ir.IRBuilder, name: str, selector: ir.Value, shapes: list[tuple[int, bool]],
                      emit: Callable[[int, bool], None]) -> None:
    """One block per tile shape ``(vectors, flag)`` in `shapes`, filled by ``emit(vectors,
    flag)``, entered where `selector` is ``2 * vectors + flag``; the builder continues after
    them. A loop per shape keeps each tile's sums in registers."""
    done = builder.append_basic_block(f"{name}.done")
    switch = builder.switch(selector, done)
    for vectors, flag in shapes:
        case = builder.append_basic_block(f"{name}.{vectors}{'x' if flag else ''}")
        switch.add_case(selector.type(2 * vectors + flag), case)
        builder.position_at_end(case)
        emit(vectors, flag)
        builder.branch(done)
    builder.position_at_end(done)


def splat(builder: ir.IRBuilder, value: ir.Value, lanes: int) -> ir.Value:
    """A vector of `lanes` copies of `value`."""
    vector = ir.VectorType(value.type, lanes)
    first = builder.insert_element(ir.Constant(vector, ir.Undefined), value, _I32(0))
    return builder.shuffle_vector(first, ir.Constant(vector, ir.Undefined), ir.Constant(ir.VectorType(_I32, lanes), [0] * lanes))


def _masked_memory(module: ir.Module, vector: ir.VectorType) -> tuple[ir.Function, ir.Function]:
    """LLVM's masked load and store of `vector`: lanes off in the mask are not touched."""
    name = f"v{vector.count}{'f32' if vector.element == ir.FloatType() else 'f64'}.p0"
    mask = ir.VectorType(ir.IntType(1), vector.count)
    load = cgutils.get_or_insert_function(
        module, ir.FunctionType(vector, [vector.as_pointer(), _I32, mask, vector]), f"llvm.masked.load.{name}")
    store = cgutils.get_or_insert_function(
        module, ir.FunctionType(ir.VoidType(), [vector, vector.as_pointer(), _I32, mask]), f"llvm.masked.store.{name}")
    return load, store
