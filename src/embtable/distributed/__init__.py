"""Tables sharded over processes and machines (SPEC §12): `ShardedEmbedding` and
`ShardedEmbeddingBag`, their rows in Ray actors. Needs the extra ``embtable[ray]``; Ray is
imported when the first sharded table is built."""

from .layers import ShardedEmbedding, ShardedEmbeddingBag

__all__ = ["ShardedEmbedding", "ShardedEmbeddingBag"]
