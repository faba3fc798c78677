"""Vocab-parallel cross-entropy for logits or weights sharded along the vocabulary.

Call these inside ``jax.shard_map`` with the name of the mesh axis that splits
the vocabulary: device ``i`` of that axis holds classes ``[i·V/n, (i+1)·V/n)``.
Devices exchange only per-token vectors — the row maximum (``pmax``), the sum
of exponentials and the label's logit (``psum``) — never logits or weights.
Labels index the full vocabulary; a label held by another device contributes
0 here and its logit arrives through the ``psum``. The loss comes back
identical on every device of the axis.
"""

from .losses._vocab_parallel import vocab_parallel_cross_entropy as vocab_parallel_cross_entropy
from .losses._vocab_parallel import (
    vocab_parallel_linear_cross_entropy as vocab_parallel_linear_cross_entropy,
)
from .losses._vocab_parallel import (
    vocab_parallel_linear_distillation_loss as vocab_parallel_linear_distillation_loss,
)
from .losses._vocab_parallel import (
    vocab_parallel_linear_softmax_stats as vocab_parallel_linear_softmax_stats,
)

__all__ = [
    "vocab_parallel_cross_entropy",
    "vocab_parallel_linear_cross_entropy",
    "vocab_parallel_linear_distillation_loss",
    "vocab_parallel_linear_softmax_stats",
]
