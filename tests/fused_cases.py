"""Shared inputs and dense references for the fused linear cross-entropy tests."""

import math

import jax
import jax.numpy as jnp
from jax.extend import core as jax_core

import jxent

dense_ce = jxent.losses.softmax_cross_entropy_with_integer_labels
fused_ce = jxent.losses.linear_cross_entropy


def problem(seed, tokens=24, dim=16, vocab=100, dtype=jnp.float32, scale=1.0):
    """hidden [tokens, dim], weight [dim, vocab], bias [vocab] and labels, seeded."""
    keys = jax.random.split(jax.random.key(seed), 4)
    hidden = jax.random.normal(keys[0], (tokens, dim), dtype)
    weight = (scale * jax.random.normal(keys[1], (dim, vocab))).astype(dtype)
    bias = jax.random.normal(keys[2], (vocab,), dtype)
    labels = jax.random.randint(keys[3], (tokens,), 0, vocab)
    return hidden, weight, bias, labels


def dense_reference(
    hidden, weight, bias, labels, softcap=None, *, where=None, reduction="none", **options
):
    """The loss from materialised logits (float32 matmul at HIGHEST precision)."""
    logits = jnp.dot(hidden, weight, precision=jax.lax.Precision.HIGHEST)
    if bias is not None:
        logits = logits + bias
    if softcap is not None:
        logits = softcap * jnp.tanh(logits / softcap)
    losses = dense_ce(logits, labels, **options)
    counted = jnp.ones(labels.shape, bool)
    if where is not None:
        counted = jnp.broadcast_to(where, labels.shape)
        losses = jnp.where(counted, losses, 0)
    if options.get("ignore_index") is not None:
        counted = counted & (labels != options["ignore_index"])
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / jnp.maximum(counted.sum(), 1)


def matmuls(jaxpr, trips=1):
    """(FLOPs, lhs dtype, rhs dtype) of every matmul of a jaxpr, loops unrolled by count.

    A scan multiplies by its length; a while loop (unknown trip count) fails.
    """
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            (lhs_contracting, _), _ = eqn.params["dimension_numbers"]
            lhs, rhs = (var.aval for var in eqn.invars)
            depth = math.prod(lhs.shape[d] for d in lhs_contracting)
            yield trips * 2 * math.prod(eqn.outvars[0].aval.shape) * depth, lhs.dtype, rhs.dtype
            continue
        assert name != "while", "a while loop hides its trip count from the FLOP count"
        inner_trips = trips * eqn.params["length"] if name == "scan" else trips
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else [param]:
                inner = getattr(sub, "jaxpr", sub)
                if isinstance(inner, jax_core.Jaxpr):
                    yield from matmuls(inner, inner_trips)
