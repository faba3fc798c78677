"""optax-style losses: optax's names and argument order, safe at every edge."""

from ._dense import poly_loss_cross_entropy as poly_loss_cross_entropy
from ._dense import safe_softmax_cross_entropy as safe_softmax_cross_entropy
from ._dense import softmax_cross_entropy as softmax_cross_entropy
from ._divergence import convex_kl_divergence as convex_kl_divergence
from ._divergence import distillation_loss as distillation_loss
from ._divergence import generalized_kl_divergence as generalized_kl_divergence
from ._divergence import kl_divergence as kl_divergence
from ._divergence import kl_divergence_with_log_targets as kl_divergence_with_log_targets
from ._fused import linear_cross_entropy as linear_cross_entropy
from ._fused_online import SoftmaxStats as SoftmaxStats
from ._fused_stats import linear_softmax_stats as linear_softmax_stats
from ._integer import (
    softmax_cross_entropy_with_integer_labels as softmax_cross_entropy_with_integer_labels,
)
from ._linear_distillation import linear_distillation_loss as linear_distillation_loss
from ._sigmoid import sigmoid_binary_cross_entropy as sigmoid_binary_cross_entropy
from ._sigmoid import sigmoid_focal_loss as sigmoid_focal_loss

__all__ = [
    "SoftmaxStats",
    "convex_kl_divergence",
    "distillation_loss",
    "generalized_kl_divergence",
    "kl_divergence",
    "kl_divergence_with_log_targets",
    "linear_cross_entropy",
    "linear_distillation_loss",
    "linear_softmax_stats",
    "poly_loss_cross_entropy",
    "safe_softmax_cross_entropy",
    "sigmoid_binary_cross_entropy",
    "sigmoid_focal_loss",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
]
