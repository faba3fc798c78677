"""linear_cross_entropy against an independent float64 NumPy reference (not jxent's dense
loss): logits, soft-cap, smoothing, z-loss, masks and reductions, value and gradients."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

import jxent

TOKENS, DIM, VOCAB = 29, 12, 70  # the vocabulary is no multiple of the block size


def reference(h, w, b, labels, counted, *, smoothing, z_loss, cap, reduction, cotangent):
    """(loss, d_hidden, d_weight, d_bias) in float64, for the given output cotangent."""
    h, w, b = (np.asarray(x, np.float64) for x in (h, w, b))
    raw = h @ w + b
    z = cap * np.tanh(raw / cap) if cap else raw
    lse = special.logsumexp(z, axis=1)
    label_logit = z[np.arange(len(labels)), np.where(counted, labels, 0)]
    loss = (1 - smoothing) * (lse - label_logit) + smoothing * (lse - z.mean(1)) + z_loss * lse**2
    loss = np.where(counted, loss, 0.0)
    count = max(counted.sum(), 1)
    if reduction == "none":
        per_token = np.asarray(cotangent, np.float64)
        value = loss
    else:
        scale = 1.0 / count if reduction == "mean" else 1.0
        per_token = np.full(len(labels), float(cotangent) * scale)
        value = loss.sum() * scale
    per_token = np.where(counted, per_token, 0.0)
    p = np.exp(z - lse[:, None])
    one_hot = np.eye(z.shape[1])[np.where(counted, labels, 0)]
    d_z = (1 + 2 * z_loss * lse)[:, None] * p - (1 - smoothing) * one_hot - smoothing / z.shape[1]
    d_z *= per_token[:, None]
    if cap:
        d_z *= 1 - np.tanh(raw / cap) ** 2
    return value, d_z @ w.T, h.T @ d_z, d_z.sum(0)


OPTIONS = {
    "plain": dict(smoothing=0.0, z_loss=0.0, cap=None),
    "all": dict(smoothing=0.2, z_loss=1e-2, cap=4.0),
}


@functools.cache
def _fused(name, reduction, mask):
    o = OPTIONS[name]

    def loss(h, w, b, labels, counted):
        return jxent.losses.linear_cross_entropy(
            h,
            w,
            labels,
            bias=b,
            where=counted if mask else None,
            ignore_index=-100,
            label_smoothing=o["smoothing"],
            z_loss=o["z_loss"],
            softcap=o["cap"],
            reduction=reduction,
            block_size=16,
            token_block_size=8,
        )

    def value_and_vjp(h, w, b, labels, counted, cotangent):
        value, vjp = jax.vjp(lambda *a: loss(*a, labels, counted), h, w, b)
        return value, vjp(cotangent)

    return jax.jit(value_and_vjp)


@pytest.mark.parametrize("name", list(OPTIONS))
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("mask", [False, True])
def test_value_and_gradients_match_float64_numpy(name, reduction, mask):
    rng = np.random.default_rng(30)
    h = rng.normal(size=(TOKENS, DIM)).astype(np.float32)
    w = (rng.normal(size=(DIM, VOCAB)) / 2).astype(np.float32)
    b = rng.normal(size=VOCAB).astype(np.float32)
    labels = rng.integers(0, VOCAB, TOKENS)
    labels[::6] = -100
    counted = labels != -100
    where = rng.random(TOKENS) < 0.8 if mask else np.ones(TOKENS, bool)
    counted &= where
    cotangent = rng.normal(size=TOKENS) if reduction == "none" else -2.5
    cotangent = np.asarray(cotangent, np.float32)
    value, grads = _fused(name, reduction, mask)(h, w, b, labels, where, cotangent)
    want = reference(
        h, w, b, labels, counted, reduction=reduction, cotangent=cotangent, **OPTIONS[name]
    )
    chex.assert_trees_all_close(value, jnp.asarray(want[0], jnp.float32), rtol=2e-6, atol=2e-6)
    for got, expected in zip(grads, want[1:], strict=True):
        chex.assert_trees_all_close(got, jnp.asarray(expected, jnp.float32), rtol=2e-5, atol=2e-6)
