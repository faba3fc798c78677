"""jxent: information-theoretic measures and losses for JAX, exact at the edges."""

from . import losses as losses
from . import metrics as metrics
from . import sharding as sharding
from ._binary import binary_cross_entropy as binary_cross_entropy
from ._binary import binary_cross_entropy_from_logits as binary_cross_entropy_from_logits
from ._binary import binary_entropy as binary_entropy
from ._binary import binary_entropy_from_logits as binary_entropy_from_logits
from ._binary import binary_kl_divergence as binary_kl_divergence
from ._binary import binary_kl_divergence_from_logits as binary_kl_divergence_from_logits
from ._elementwise import rel_entr as rel_entr
from ._elementwise import xlog1py as xlog1py
from ._jensen import generalized_js_divergence as generalized_js_divergence
from ._jensen import generalized_js_divergence_from_logits as generalized_js_divergence_from_logits
from ._jensen import js_divergence as js_divergence
from ._joint import conditional_entropy as conditional_entropy
from ._joint import mutual_information as mutual_information
from ._measures import cross_entropy as cross_entropy
from ._measures import cross_entropy_from_logits as cross_entropy_from_logits
from ._measures import entropy as entropy
from ._measures import entropy_from_logits as entropy_from_logits
from ._measures import kl_divergence as kl_divergence
from ._measures import kl_divergence_from_logits as kl_divergence_from_logits
from ._primitives import xlogx as xlogx
from ._primitives import xlogy as xlogy
from ._renyi import renyi_divergence as renyi_divergence
from ._renyi import renyi_divergence_from_logits as renyi_divergence_from_logits
from ._renyi import renyi_entropy as renyi_entropy
from ._renyi import renyi_entropy_from_logits as renyi_entropy_from_logits
from ._validation import checked as checked
from ._validation import validation_mode as validation_mode

__version__ = "0.1.0.dev0"

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_from_logits",
    "binary_entropy",
    "binary_entropy_from_logits",
    "binary_kl_divergence",
    "binary_kl_divergence_from_logits",
    "checked",
    "conditional_entropy",
    "cross_entropy",
    "cross_entropy_from_logits",
    "entropy",
    "entropy_from_logits",
    "generalized_js_divergence",
    "generalized_js_divergence_from_logits",
    "js_divergence",
    "kl_divergence",
    "kl_divergence_from_logits",
    "losses",
    "metrics",
    "mutual_information",
    "rel_entr",
    "renyi_divergence",
    "renyi_divergence_from_logits",
    "renyi_entropy",
    "renyi_entropy_from_logits",
    "sharding",
    "validation_mode",
    "xlog1py",
    "xlogx",
    "xlogy",
]
