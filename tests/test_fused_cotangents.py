"""linear_cross_entropy under unequal per-token cotangents, with skipped tokens whose
hidden states are NaN, and with a weight in the wrong layout."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fused_cases import dense_reference, fused_ce, problem

TOKENS, VOCAB = 37, 100
OPTIONS = {
    "plain": {},
    "all": {
        "ignore_index": -100,
        "label_smoothing": 0.2,
        "z_loss": 1e-2,
        "softcap": 4.0,
        "where": True,
    },
}


def _case(name):
    hidden, weight, bias, labels = problem(3, tokens=TOKENS, vocab=VOCAB, scale=2.0)
    options = dict(OPTIONS[name])
    if options.pop("where", False):
        options["where"] = jnp.arange(TOKENS) % 4 != 1
    if options.get("ignore_index") is not None:
        labels = labels.at[::5].set(-100)
    return hidden, weight, bias, labels, options


@functools.cache
def _vjp(name, block_size, token_block_size):
    """jit of (fused vjp, dense vjp) for a per-token cotangent."""
    _, _, _, labels, options = _case(name)

    def both(hidden, weight, bias, cotangent):
        fused = jax.vjp(
            lambda h, w, b: fused_ce(
                h,
                w,
                labels,
                bias=b,
                block_size=block_size,
                token_block_size=token_block_size,
                **options,
            ),
            hidden,
            weight,
            bias,
        )[1](cotangent)
        dense = jax.vjp(
            lambda h, w, b: dense_reference(h, w, b, labels, **options), hidden, weight, bias
        )[1](cotangent)
        return fused, dense

    return jax.jit(both)


@pytest.mark.parametrize("name", list(OPTIONS))
@pytest.mark.parametrize(("block_size", "token_block_size"), [(None, None), (32, 8), (7, 5)])
def test_random_per_token_cotangents_match_the_dense_vjp(name, block_size, token_block_size):
    hidden, weight, bias, _, _ = _case(name)
    cotangent = jax.random.normal(jax.random.key(8), (TOKENS,))
    fused, dense = _vjp(name, block_size, token_block_size)(hidden, weight, bias, cotangent)
    chex.assert_trees_all_close(fused, dense, rtol=1e-5, atol=1e-5)
    # The outer cotangent scales everything, with its sign.
    scaled, _ = _vjp(name, block_size, token_block_size)(hidden, weight, bias, -3 * cotangent)
    chex.assert_trees_all_close(scaled, jax.tree.map(lambda g: -3 * g, fused), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("skip", ["where", "ignore_index"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_skipped_tokens_hidden_state_is_never_read(reduction, skip, bad):
    hidden, weight, bias, labels = problem(4, tokens=12, vocab=20)
    skipped = np.zeros(12, bool)
    skipped[[2, 7]] = True
    hidden = hidden.at[skipped].set(bad)
    options = {"reduction": reduction, "bias": bias, "block_size": 8, "token_block_size": 4}
    if skip == "where":
        options["where"] = ~skipped
    else:
        labels = jnp.where(skipped, -100, labels)
        options["ignore_index"] = -100

    def total(h, w, b):
        return fused_ce(h, w, labels, **(options | {"bias": b})).sum()

    value, grads = jax.jit(jax.value_and_grad(total, (0, 1, 2)))(hidden, weight, bias)
    chex.assert_tree_all_finite((value, grads))
    np.testing.assert_array_equal(np.asarray(grads[0])[skipped], 0)
    clean = hidden.at[skipped].set(0.0)
    want = jax.jit(jax.value_and_grad(total, (0, 1, 2)))(clean, weight, bias)
    chex.assert_trees_all_close((value, grads), want, rtol=1e-6, atol=1e-7)


def test_an_embedding_table_layout_is_refused_with_the_fix():
    hidden, weight, _, labels = problem(5, tokens=4, dim=8, vocab=30)
    with pytest.raises(ValueError, match=r"embedding\.T"):
        fused_ce(hidden, weight.T, labels)
