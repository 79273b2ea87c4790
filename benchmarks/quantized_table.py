"""Quantized tables (SPEC §10) against float32 tables and PyTorch's quantized bags, side by
side in one process, the cases taking turns run by run. Run by hand (never in CI):

    .venv/bin/python benchmarks/quantized_table.py [--tables 1e6x64 1e6x128 1e7x64 1e7x128]
        [--bags 2048] [--length 20] [--lookup 65536] [--runs 3] [--vectors embtable-demo/vectors.safetensors]

For each table (uniform ids): a lookup of `--lookup` ids and sum and mean bags (`--bags`
bags of about `--length` ids) of embtable's float32 layer, its int8 and int4 layers (per
row, and per group of 32 columns), PyTorch's float bag (``F.embedding_bag``) and PyTorch's
``embedding_bag_byte_rowwise_offsets`` / ``embedding_bag_4bit_rowwise_offsets`` (sum
only: they have no mean), with each table's bytes per row. Ratios are PyTorch's time over
embtable's. With `--vectors`, first the quality cost of each layout on those word vectors
(mean cosine to the float rows, top-10 neighbour overlap). "torch int8 on ours" is
PyTorch's byte op reading embtable's int8 rows in place (the same layout): the same bytes,
in memory NumPy allocated (transparent huge pages where the system allows them), where
PyTorch's own packed rows are not. Medians of `--runs` runs of 7 interleaved turns of 5
calls each (a library's worker threads spin a while after its calls, slowing the first
calls of the next case).
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch

import embtable as et
from embtable.apps.timing import machine, side_by_side


def table_size(text: str) -> tuple[int, int]:
    rows, dim = text.split("x")
    return int(float(rows)), int(dim)


def bags(rng: np.random.Generator, rows: int, count: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` bags of 1 to 2 * `length` - 1 uniform ids, as flat ids and CSR bounds."""
    sizes = rng.integers(1, 2 * length, count)
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return rng.integers(0, rows, bounds[-1]).astype(np.int64), bounds


LAYOUTS = [(8, None), (4, None), (8, 32), (4, 32)]
CALLS = 5  # timed calls of a case in a row: another library's spinning threads slow only the first


def layers_of(weights: np.ndarray, kind: type, **options) -> dict[str, et.nn.Layer]:
    """The float32 layer of `kind` over `weights` and its quantized layers, by name."""
    floated = kind.from_pretrained(weights, **options)
    return {"f32": floated, **{f"int{bits}" + ("" if group is None else f" g{group}"): floated.to_quantized(bits, group)
                               for bits, group in LAYOUTS}}


def timed(cases: dict[str, object], runs: int) -> dict[str, float]:
    """The median ms of each case, over `runs` runs of interleaved calls."""
    names = list(cases)
    results = [side_by_side([(cases[name], lambda: None) for name in names], calls=CALLS) for _ in range(runs)]
    return {name: statistics.median(result[k] for result in results) for k, name in enumerate(names)}


def measure(rows: int, dim: int, args: argparse.Namespace, rng: np.random.Generator) -> list[str]:
    weights = rng.standard_normal((rows, dim), dtype=np.float32)
    flat, bounds = bags(rng, rows, args.bags, args.length)
    ids = rng.integers(0, rows, args.lookup).astype(np.int64)
    torch_weights, tflat, tbounds, tids = (torch.from_numpy(a) for a in (weights, flat, bounds, ids))
    packed = {"int8": torch.ops.quantized.embedding_bag_byte_prepack(torch_weights),
              "int4": torch.ops.quantized.embedding_bag_4bit_prepack(torch_weights)}
    ops = {"int8": torch.ops.quantized.embedding_bag_byte_rowwise_offsets,
           "int4": torch.ops.quantized.embedding_bag_4bit_rowwise_offsets}
    layers = layers_of(weights, et.nn.Embedding)
    lines = [f"{rows:.0e} x {dim}, {args.bags} bags of ~{args.length} ids, lookups of {args.lookup}: bytes per row "
             + ", ".join(f"{name} {(layer.weight.numel() * 4 if name == 'f32' else layer.nbytes) / rows:.1f}"
                         for name, layer in layers.items())
             + f"; torch int8 {packed['int8'].shape[1]}, torch int4 {packed['int4'].shape[1]}"]
    cases = {f"lookup {name}": (lambda layer=layer: layer(ids)) for name, layer in layers.items()}
    cases["lookup torch f32"] = lambda: torch.nn.functional.embedding(tids, torch_weights)
    lines += report(timed(cases, args.runs), "lookup")
    del layers, cases
    for mode in ("sum", "mean"):
        layers = layers_of(weights, et.nn.EmbeddingBag, mode=mode, include_last_offset=True)
        cases = {f"{mode} bag {name}": (lambda layer=layer: layer(flat, bounds)) for name, layer in layers.items()}
        cases[f"{mode} bag torch f32"] = (lambda mode=mode: torch.nn.functional.embedding_bag(
            tflat, torch_weights, tbounds, mode=mode, include_last_offset=True))
        if mode == "sum":  # PyTorch's quantized bags only sum
            for bits in ("int8", "int4"):
                cases[f"sum bag torch {bits}"] = (lambda bits=bits: ops[bits](
                    packed[bits], tflat, tbounds, False, 0, False, None, None, True))
            if dim % 4 == 0:  # embtable's int8 rows are PyTorch's layout: its op can read them in place
                ours = torch.from_numpy(np.asarray(layers["int8"].rows.numpy()))
                cases["sum bag torch int8 on ours"] = lambda ours=ours: ops["int8"](
                    ours, tflat, tbounds, False, 0, False, None, None, True)
        lines += report(timed(cases, args.runs), f"{mode} bag")
        del layers, cases
    return lines


def report(times: dict[str, float], what: str) -> list[str]:
    """A line per case: its time, and PyTorch's float32 (and same-bits quantized) time over it."""
    lines = []
    for name, ms in times.items():
        layout = name[len(what) + 1:]
        ratios = f"torch f32 / this {times[f'{what} torch f32'] / ms:5.2f}x"
        same_bits = f"{what} torch {layout.split()[0]}"
        if not layout.startswith(("torch", "f32")) and same_bits in times:
            ratios += f", torch {layout.split()[0]} / this {times[same_bits] / ms:5.2f}x"
        lines.append(f"  {name:24s} {ms:8.2f} ms   {ratios}")
    return lines


def quality(path: str, rng: np.random.Generator, probes: int = 1000, k: int = 10) -> list[str]:
    """How much each layout changes the word vectors saved at `path` (an `Embedding`
    checkpoint, e.g. the demo's ``vectors.safetensors``): the mean cosine between each float
    row and its dequantized row, and the mean overlap of `k` nearest neighbours (by cosine,
    the word itself left out) of `probes` random words, float against dequantized."""
    layer = et.nn.Embedding.load(path)
    floated = layer.weight.numpy().astype(np.float64)
    words = rng.choice(floated.shape[0], min(probes, floated.shape[0]), replace=False)

    def unit(vectors: np.ndarray) -> np.ndarray:
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-30)

    def neighbours(vectors: np.ndarray) -> np.ndarray:
        similar = unit(vectors)[words] @ unit(vectors).T
        similar[np.arange(words.size), words] = -np.inf
        return np.argsort(-similar, axis=1)[:, :k]

    expected = neighbours(floated)
    lines = [f"quality on {path} ({floated.shape[0]} x {floated.shape[1]}; {words.size} probe words, top-{k}):"]
    dim = floated.shape[1]
    small = max(g for g in range(1, 33) if dim % g == 0)  # groups of 32 columns, or the nearest that fit
    for bits, group in [(bits, None if group is None else small) for bits, group in LAYOUTS]:
        dequantized = layer.to_quantized(bits, group).dequantize().numpy().astype(np.float64)
        cosine = float(np.mean(np.sum(unit(floated) * unit(dequantized), axis=1)))
        found = neighbours(dequantized)
        overlap = float(np.mean([np.intersect1d(a, b).size / k for a, b in zip(expected, found)]))
        lines.append(f"  int{bits} {'row-wise' if group is None else f'g{group}':8s} mean cosine {cosine:.5f}, "
                     f"top-{k} overlap {overlap:.3f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", nargs="+", type=table_size, default=[(10**6, 64), (10**6, 128)])
    parser.add_argument("--bags", type=int, default=2048)
    parser.add_argument("--length", type=int, default=20)
    parser.add_argument("--lookup", type=int, default=65536)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--vectors", help="an Embedding checkpoint to measure the quality cost on (the demo's "
                                          "embtable-demo/vectors.safetensors)")
    args = parser.parse_args()
    print(machine(), flush=True)
    rng = np.random.default_rng(0)
    if args.vectors:
        for line in quality(args.vectors, rng):
            print(line, flush=True)
    for rows, dim in args.tables:
        for line in measure(rows, dim, args, rng):
            print(line, flush=True)


if __name__ == "__main__":
    main()
