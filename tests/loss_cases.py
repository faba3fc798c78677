"""Shared inputs and float64 references of the integer-label loss tests."""

import numpy as np
from scipy import special


def adversarial_rows(rng, rows, num_classes):
    """float32 logits in [-1e4, 1e4]: a row peak anywhere, the other classes a
    little (1e-3) to a lot (1e3) below it; half the labels sit at the peak
    (small losses), half anywhere."""
    peak = rng.uniform(-1e4, 1e4, size=(rows, 1))
    spread = 10.0 ** rng.uniform(-3, 3, size=(rows, 1))
    logits = np.maximum(peak - rng.exponential(spread, size=(rows, num_classes)), -1e4)
    logits[:, 0] = peak[:, 0]
    logits = rng.permuted(logits, axis=1).astype(np.float32)
    at_peak = np.argmax(logits, axis=-1)
    anywhere = rng.integers(0, num_classes, rows)
    labels = np.where(rng.random(rows) < 0.5, at_peak, anywhere).astype(np.int32)
    return logits, labels


def reference(logits, labels, smoothing=0.0, z_loss=0.0):
    """float64: lse - z_k by SciPy's logsumexp of the exact differences z - z_k,
    then (1-α)(lse - z_k) + (α/K) Σ_j (lse - z_j) + λ lse²."""
    z = logits.astype(np.float64)
    z_k = np.take_along_axis(z, labels[:, None], axis=-1)
    label_gap = special.logsumexp(z - z_k, axis=-1)
    mean_gap = label_gap + np.mean(z_k - z, axis=-1)
    lse = special.logsumexp(z, axis=-1)
    return (1 - smoothing) * label_gap + smoothing * mean_gap + z_loss * lse**2
