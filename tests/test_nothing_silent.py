"""No silent wrong value: the +inf-logit rule and the empty-row rule in every measure
and loss of logits, second derivatives in every order of modes, the generalised JS of
logits at zero probabilities, the validation mode with the fused loss, and options of
the wrong type or outside their domain."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jxent

INF = np.inf
PAIR_OF_LOGITS = {  # name: fn(p_logits, q_logits)
    "kl_divergence_from_logits": jxent.kl_divergence_from_logits,
    "renyi_divergence_from_logits": lambda a, b: jxent.renyi_divergence_from_logits(a, b, 0.5),
    "generalized_js_divergence_from_logits": lambda a, b: (
        jxent.generalized_js_divergence_from_logits(a, b, 0.3)
    ),
    "distillation_loss": lambda a, b: jxent.losses.distillation_loss(b, a, temperature=2.0),
}
ONE_LOGIT_ARRAY = {  # name: fn(logits)
    "entropy_from_logits": jxent.entropy_from_logits,
    "renyi_entropy_from_logits": lambda z: jxent.renyi_entropy_from_logits(z, 2.0),
    "cross_entropy_from_logits": lambda z: jxent.cross_entropy_from_logits(
        jnp.full(z.shape, 1 / z.shape[-1]), z
    ),
    "softmax_cross_entropy": lambda z: jxent.losses.softmax_cross_entropy(
        z, jnp.full(z.shape, 1 / z.shape[-1])
    ),
    "softmax_cross_entropy_with_integer_labels": lambda z: (
        jxent.losses.softmax_cross_entropy_with_integer_labels(z, jnp.zeros(z.shape[:-1], int))
    ),
    "poly_loss_cross_entropy": lambda z: jxent.losses.poly_loss_cross_entropy(
        z, jnp.full(z.shape, 1 / z.shape[-1])
    ),
    "linear_cross_entropy": lambda z: jxent.losses.linear_cross_entropy(
        jnp.ones((*z.shape[:-1], 1)), z[..., :1, :].reshape(1, -1), jnp.zeros(z.shape[:-1], int)
    ),
    "linear_cross_entropy mean": lambda z: jxent.losses.linear_cross_entropy(
        jnp.ones((*z.shape[:-1], 1)),
        z[..., :1, :].reshape(1, -1),
        jnp.zeros(z.shape[:-1], int),
        reduction="mean",
    ),
}
ONE_LOGIT_ARRAY |= {
    f"{name} (first)": functools.partial(lambda fn, z: fn(z, jnp.zeros_like(z)), fn)
    for name, fn in PAIR_OF_LOGITS.items()
}
ONE_LOGIT_ARRAY |= {
    f"{name} (second)": functools.partial(lambda fn, z: fn(jnp.zeros_like(z), z), fn)
    for name, fn in PAIR_OF_LOGITS.items()
}


@pytest.mark.parametrize("name", list(ONE_LOGIT_ARRAY))
def test_a_plus_inf_logit_is_nan_and_a_validation_error(name):
    fn = ONE_LOGIT_ARRAY[name]
    logits = jnp.asarray([[0.0, INF, 1.0]], jnp.float32)  # one row: the linear case's weight
    assert np.isnan(np.asarray(jax.jit(fn)(logits))).all(), name
    # A float16 logit of 70000 overflows to +inf: the same rule.
    overflowed = jnp.asarray([[0.0, 7e4, 1.0]]).astype(jnp.float16)
    assert np.isnan(np.asarray(fn(overflowed))).all(), name
    if name.startswith("linear_cross_entropy"):
        return  # the fused loss never holds the logits it would check
    error, _ = jax.jit(jxent.checked(fn))(logits)
    with pytest.raises(Exception, match=r"\+inf|NaN"):
        error.throw()


@pytest.mark.parametrize(
    ("fn", "args"),
    [
        (jxent.cross_entropy_from_logits, (jnp.asarray([0.3, 0.7]), jnp.full(2, -INF))),
        (jxent.kl_divergence_from_logits, (jnp.zeros(2), jnp.full(2, -INF))),
        (jxent.kl_divergence_from_logits, (jnp.full(2, -INF), jnp.zeros(2))),
        (
            lambda a, b: jxent.generalized_js_divergence_from_logits(a, b, 0.3),
            (jnp.zeros(2), jnp.full(2, -INF)),
        ),
        (
            lambda p, z: jxent.cross_entropy_from_logits(p, z, where=jnp.zeros(2, bool)),
            (jnp.asarray([0.3, 0.7]), jnp.zeros(2)),
        ),
        (lambda z, p: jxent.losses.softmax_cross_entropy(z, p), (jnp.full(2, -INF), jnp.ones(2))),
    ],
)
def test_an_empty_row_is_zero_with_zero_gradients(fn, args):
    value = fn(*args)
    np.testing.assert_array_equal(np.asarray(value), 0.0)
    argnums = tuple(range(len(args)))
    for grads in (jax.grad(fn, argnums)(*args), jax.jacfwd(fn, argnums)(*args)):
        for g in grads:
            np.testing.assert_array_equal(np.asarray(g), 0.0)


@pytest.mark.parametrize(
    "where", [None, jnp.asarray([True, False, True, True])], ids=["-inf", "masked"]
)
def test_entropy_from_logits_second_derivatives_agree_in_every_order_of_modes(where):
    logits = jnp.asarray([0.3, -INF, 1.0, -2.0]) if where is None else jnp.arange(4.0)

    def f(z):
        return jxent.entropy_from_logits(z, where=where)

    forms = {
        "hessian": jax.hessian(f),
        "rev-rev": jax.jacrev(jax.jacrev(f)),
        "fwd-rev": jax.jacfwd(jax.jacrev(f)),
        "rev-fwd": jax.jacrev(jax.jacfwd(f)),
        "grad-grad": jax.jacrev(lambda z: jax.grad(f)(z)),
    }
    got = {name: np.asarray(form(logits)) for name, form in forms.items()}
    # The naive float64 formula on the classes that count (all finite there).
    keep = np.isfinite(np.asarray(logits)) if where is None else np.asarray(where)
    with jax.enable_x64(True):
        naive = jax.hessian(lambda v: -(jax.nn.softmax(v) * jax.nn.log_softmax(v)).sum())
        exact = np.asarray(naive(jnp.asarray(np.asarray(logits, np.float64)[keep])))
    want = np.zeros((4, 4))
    want[np.ix_(keep, keep)] = exact
    for name, value in got.items():
        chex.assert_tree_all_finite(value)
        np.testing.assert_allclose(value, want, rtol=1e-5, atol=1e-6, err_msg=name)


def test_generalized_js_of_logits_has_finite_gradients_at_zero_probabilities():
    f = jxent.generalized_js_divergence_from_logits
    a, b = jnp.asarray([0.0, -INF]), jnp.zeros(2)
    grads = jax.grad(f, (0, 1))(a, b, 0.5)
    chex.assert_tree_all_finite(grads)
    chex.assert_trees_all_close(grads, jax.jacfwd(f, (0, 1))(a, b, 0.5))
    chex.assert_tree_all_finite(jax.hessian(f, (0, 1))(a, b, 0.5))
    # Logits of N(0, 25²) over 1000 classes: many probabilities underflow to 0.
    keys = jax.random.split(jax.random.key(5), 2)
    z, w = (25 * jax.random.normal(k, (4, 1000)) for k in keys)
    beta = jnp.asarray([0.1, 0.3, 0.5, 0.9])
    grads = jax.jit(jax.grad(lambda *x: f(*x).sum(), (0, 1, 2)))(z, w, beta)
    chex.assert_tree_all_finite(grads)
    # Against the dense float64 value through the softmaxes, by finite differences.
    with jax.enable_x64(True):
        z64, w64 = (jnp.asarray(x[:1, :8], jnp.float64) / 5 for x in (z, w))
        check_grads(lambda x, y: f(x, y, 0.3), (z64, w64), order=2, modes=("fwd", "rev"))


def test_validation_mode_and_the_fused_loss():
    fused = jax.jit(jxent.checked(jxent.losses.linear_cross_entropy))
    weight = jnp.ones((2, 3))
    error, losses = fused(jnp.ones((0, 2)), weight, jnp.zeros(0, int))
    assert error.get() is None and losses.shape == (0,)
    nan_hidden = jnp.asarray([[np.nan, 1.0], [1.0, 1.0]])
    error, _ = fused(nan_hidden, weight, jnp.zeros(2, int))
    with pytest.raises(Exception, match="hidden contains NaN"):
        error.throw()
    # A token that does not count may be NaN (padding).
    masked = jax.jit(
        jxent.checked(
            lambda h, w, y: jxent.losses.linear_cross_entropy(
                h, w, y, where=jnp.asarray([False, True])
            )
        )
    )
    error, _ = masked(nan_hidden, weight, jnp.zeros(2, int))
    assert error.get() is None


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: jxent.entropy(jnp.full(2, 0.5), base="2"), TypeError, "base"),
        (lambda: jxent.entropy(jnp.full(2, 0.5), base=True), TypeError, "base"),
        (
            lambda: jxent.losses.linear_cross_entropy(
                jnp.ones((2, 2)), jnp.ones((2, 3)), jnp.zeros(2, int), block_size=2.5
            ),
            TypeError,
            "block_size",
        ),
        (
            lambda: jxent.losses.linear_cross_entropy(
                jnp.ones((2, 2)), jnp.ones((2, 3)), jnp.zeros(2, int), token_block_size="8"
            ),
            TypeError,
            "token_block_size",
        ),
        (
            lambda: jxent.losses.distillation_loss(jnp.zeros(3), jnp.zeros(3), temperature=INF),
            ValueError,
            "temperature",
        ),
        (
            lambda: jxent.losses.distillation_loss(
                jnp.zeros((2, 3)), jnp.zeros((2, 3)), temperature=jnp.ones(5)
            ),
            ValueError,
            "temperature",
        ),
        (
            lambda: jxent.losses.sigmoid_binary_cross_entropy(
                jnp.zeros(3), jnp.zeros(3), pos_weight="a"
            ),
            TypeError,
            "pos_weight",
        ),
    ],
)
def test_options_of_the_wrong_type_or_domain_name_themselves(call, error, match):
    with pytest.raises(error, match=match):
        call()
