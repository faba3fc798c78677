"""Values of every measure against float64 NumPy/SciPy references; transforms,
dtypes and bad input.

Properties (hypothesis) are in test_measures_props.py, derivatives in
test_measures_grads.py.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

import jxent

INF = np.inf
NAN = np.nan

# name -> (function, names of its array arguments)
MEASURES = {
    "entropy": (jxent.entropy, ("probs",)),
    "cross_entropy": (jxent.cross_entropy, ("p", "q")),
    "kl_divergence": (jxent.kl_divergence, ("p", "q")),
    "js_divergence": (jxent.js_divergence, ("p", "q")),
    "entropy_from_logits": (jxent.entropy_from_logits, ("logits",)),
    "cross_entropy_from_logits": (jxent.cross_entropy_from_logits, ("p", "q_logits")),
    "kl_divergence_from_logits": (jxent.kl_divergence_from_logits, ("p_logits", "q_logits")),
}
BINARY = {
    "binary_entropy": (jxent.binary_entropy, ("p",)),
    "binary_cross_entropy": (jxent.binary_cross_entropy, ("p", "q")),
    "binary_kl_divergence": (jxent.binary_kl_divergence, ("p", "q")),
}
ALL = {**MEASURES, **BINARY}
DIVERGENCES = ["kl_divergence", "js_divergence", "kl_divergence_from_logits"]
PROB_MEASURES = ["entropy", "cross_entropy", "kl_divergence", "js_divergence"]
LOGIT_MEASURES = ["entropy_from_logits", "cross_entropy_from_logits", "kl_divergence_from_logits"]


# --------------------------------------------------------------------------- inputs


def random_inputs(rng, shape, *, zeros=0.3, scale=30.0, alpha=1.0):
    """Float32 P, Q (probabilities) and their logits, with exact zeros / -inf.

    Q's zeros are a subset of P's, so every measure is finite; one class per
    row is never zeroed. Probabilities are renormalised after zeroing.
    """
    n = shape[-1]
    kept = rng.integers(n, size=shape[:-1])[..., None] == np.arange(n)
    absent_q = (rng.random(shape) < zeros) & ~kept
    absent_p = absent_q | ((rng.random(shape) < zeros) & ~kept)

    def probs(absent):
        x = rng.dirichlet(np.full(n, alpha), size=shape[:-1])
        x = np.where(absent, 0.0, np.maximum(x, 1e-30))  # no float32 underflow
        return (x / x.sum(-1, keepdims=True)).astype(np.float32)

    def logits(absent):
        z = (rng.uniform(-1.0, 1.0, shape) * scale).astype(np.float32)
        return np.where(absent, -INF, z).astype(np.float32)

    return {
        "p": probs(absent_p),
        "q": probs(absent_q),
        "zp": logits(absent_p),
        "zq": logits(absent_q),
    }


# Which of random_inputs' arrays each measure takes.
INPUT_KEYS = {
    "entropy": ("p",),
    "cross_entropy": ("p", "q"),
    "kl_divergence": ("p", "q"),
    "js_divergence": ("p", "q"),
    "entropy_from_logits": ("zp",),
    "cross_entropy_from_logits": ("p", "zq"),
    "kl_divergence_from_logits": ("zp", "zq"),
}


def select(name, inputs):
    return tuple(inputs[k] for k in INPUT_KEYS[name])


def binary_inputs(rng, size):
    edges = [0.0, 1.0, 1e-5, 1e-7, 1 - 1e-5, 0.5, 0.25, 1e-5]
    p = np.concatenate([edges, rng.random(size), 10 ** rng.uniform(-7, -1, size)])
    edges_q = [1e-5, 1 - 1e-5, 2e-5, 1e-5, 0.5, 1e-5, 0.75, 0.5]
    q = np.concatenate([edges_q, rng.random(size), 10 ** rng.uniform(-7, -1, size)])
    return p.astype(np.float32), np.clip(q, 1e-7, 1 - 1e-7).astype(np.float32)


# --------------------------------------------------------------------------- float64 references


def f64(x):
    return np.asarray(x, np.float64)


def mul0(a, b):
    """a * b with 0 wherever a == 0 (whatever b is)."""
    with np.errstate(invalid="ignore"):
        return np.where(a == 0, 0.0, a * b)


def ref_log_softmax(z):
    z = f64(z)
    lse = special.logsumexp(z, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore"):
        return np.where(np.isneginf(z), -INF, z - lse)


def reference(name, *args):
    """Float64 value of measure ``name`` on the given (float32) arguments, in nats."""
    args = [f64(a) for a in args]
    if name == "entropy":
        return special.entr(args[0]).sum(-1)
    if name == "cross_entropy":
        return -special.xlogy(*args).sum(-1)
    if name == "kl_divergence":
        return special.rel_entr(*args).sum(-1)
    if name == "js_divergence":
        p, q = args
        m = 0.5 * (p + q)
        return 0.5 * (special.rel_entr(p, m) + special.rel_entr(q, m)).sum(-1)
    if name == "entropy_from_logits":
        return special.entr(np.exp(ref_log_softmax(args[0]))).sum(-1)
    if name == "cross_entropy_from_logits":
        return -mul0(args[0], ref_log_softmax(args[1])).sum(-1)
    if name == "kl_divergence_from_logits":
        log_p, log_q = ref_log_softmax(args[0]), ref_log_softmax(args[1])
        with np.errstate(invalid="ignore"):
            return mul0(np.exp(log_p), log_p - log_q).sum(-1)
    p = args[0]
    if name == "binary_entropy":
        return -(special.xlogy(p, p) + special.xlog1py(1 - p, -p))
    q = args[1]
    if name == "binary_cross_entropy":
        return -(special.xlogy(p, q) + special.xlog1py(1 - p, -q))
    if name == "binary_kl_divergence":
        # 1 - p is exact in float64 for float32 p.
        return special.rel_entr(p, q) + special.rel_entr(1 - p, 1 - q)
    raise KeyError(name)


RTOL = {"entropy": 2e-6, "cross_entropy": 2e-6, "kl_divergence": 1e-5, "js_divergence": 1e-5}
RTOL |= {"entropy_from_logits": 2e-6, "cross_entropy_from_logits": 2e-6}
RTOL |= {"kl_divergence_from_logits": 1e-5}
RTOL |= {"binary_entropy": 2e-6, "binary_cross_entropy": 2e-6, "binary_kl_divergence": 1e-5}


def cancellation_scale(name, *args):
    """Sum of the magnitudes of a divergence's terms (0 for the other measures).

    A float32 sum of terms of both signs is accurate to a few ulps of this, not
    of the (possibly much smaller) result: KL and JS of nearly equal
    distributions are "near 0" (DESIGN: absolute error there), with an
    absolute error proportional to the probability mass and to this sum.
    """
    args = [f64(a) for a in args]
    if name == "kl_divergence":
        return np.abs(special.rel_entr(*args)).sum(-1)
    if name == "js_divergence":
        p, q = args
        m = 0.5 * (p + q)
        return (np.abs(special.rel_entr(p, m)) + np.abs(special.rel_entr(q, m))).sum(-1)
    if name == "kl_divergence_from_logits":
        log_p, log_q = ref_log_softmax(args[0]), ref_log_softmax(args[1])
        with np.errstate(invalid="ignore"):
            return np.abs(mul0(np.exp(log_p), log_p - log_q)).sum(-1)
    return np.zeros(np.shape(reference(name, *args)))


def assert_matches(got, expected, rtol, atol=0.0):
    """|got - expected| <= rtol |expected| + atol (atol may be an array); inf must match."""
    got, expected = f64(got), f64(expected)
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(expected))
    finite = np.isfinite(expected)
    error = np.abs(got - expected)[finite]
    bound = (
        (rtol * np.abs(expected) + atol)[finite]
        if np.ndim(atol)
        else (rtol * np.abs(expected[finite]) + atol)
    )
    worst = np.argmax(error - bound) if error.size else None
    assert np.all(error <= bound), (
        f"error {error[worst]:.3g} > bound {bound[worst]:.3g} "
        f"(got {got[finite][worst]!r}, expected {expected[finite][worst]!r})"
    )


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize("n", [2, 7, 1000, 2**17])
@pytest.mark.parametrize("name", PROB_MEASURES)
def test_probability_measures_match_float64(name, n, rng):
    fn, _ = MEASURES[name]
    batch = 2 if n == 2**17 else 8
    for alpha in (1.0, 0.2):
        args = select(name, random_inputs(rng, (batch, n), alpha=alpha))
        got = fn(*args)
        chex.assert_shape(got, (batch,))
        chex.assert_type(got, jnp.float32)
        chex.assert_tree_all_finite(got)
        atol = 2.5e-7 * (1 + cancellation_scale(name, *args)) if name in DIVERGENCES else 0.0
        assert_matches(got, reference(name, *args), RTOL[name], atol)


@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])
@pytest.mark.parametrize("n", [2, 7, 1000, 2**17])
@pytest.mark.parametrize("name", LOGIT_MEASURES)
def test_logit_measures_match_float64(name, n, scale, rng):
    fn, _ = MEASURES[name]
    batch = 2 if n == 2**17 else 8
    args = select(name, random_inputs(rng, (batch, n), scale=scale))
    got = fn(*args)
    chex.assert_shape(got, (batch,))
    chex.assert_type(got, jnp.float32)
    chex.assert_tree_all_finite(got)
    # Relative, and absolute 1e-6 near 0 (huge logits make near-one-hot rows).
    atol = 1e-6 + 1e-6 * cancellation_scale(name, *args)
    assert_matches(got, reference(name, *args), RTOL[name], atol)


def test_measures_on_one_hot_and_uniform_rows(rng):
    n = 5
    q = random_inputs(rng, (n, n), zeros=0.0)["q"]
    z = (rng.normal(size=(n, n)) * 10).astype(np.float32)
    one_hot = np.eye(n, dtype=np.float32)
    log_q = np.log(f64(q))
    np.testing.assert_array_equal(np.asarray(jxent.entropy(one_hot)), np.zeros(n))
    assert_matches(jxent.cross_entropy(one_hot, q), -np.diag(log_q), 2e-6)
    assert_matches(jxent.kl_divergence(one_hot, q), -np.diag(log_q), 1e-5)
    log_softmax = ref_log_softmax(z)
    assert_matches(jxent.cross_entropy_from_logits(one_hot, z), -np.diag(log_softmax), 2e-6)
    uniform = np.full((3, n), 1 / n, np.float32)
    assert_matches(jxent.entropy(uniform), np.full(3, np.log(n)), 2e-6)
    assert_matches(jxent.entropy_from_logits(np.zeros((3, n), np.float32)), [np.log(n)] * 3, 2e-6)
    assert_matches(jxent.entropy(uniform, base=n), np.ones(3), 2e-6)
    # Disjoint supports: JS is log 2, exactly 1 bit.
    assert_matches(jxent.js_divergence(one_hot, np.roll(one_hot, 1, 0)), [np.log(2)] * n, 1e-6)
    assert_matches(jxent.js_divergence(one_hot, np.roll(one_hot, 1, 0), base=2), [1.0] * n, 1e-6)


def test_identical_distributions_give_zero_divergence(rng):
    inputs = random_inputs(rng, (6, 9), scale=1e4)
    p, zp = inputs["p"], inputs["zp"]
    for value in (
        jxent.kl_divergence(p, p),
        jxent.js_divergence(p, p),
        jxent.kl_divergence_from_logits(zp, zp),
        jxent.kl_divergence_from_logits(zp, zp + np.float32(0.5)),
        jxent.binary_kl_divergence(p, p),
    ):
        chex.assert_trees_all_close(value, jnp.zeros_like(value), atol=1e-6)


def test_infinite_values_are_inf_not_nan():
    p = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]], np.float32)
    q = np.array([[0.5, 0.0, 0.5], [0.0, 0.0, 1.0]], np.float32)
    for fn in (jxent.cross_entropy, jxent.kl_divergence):
        np.testing.assert_array_equal(np.asarray(fn(p, q)), [INF, INF])
    # JS is bounded even when supports differ.
    assert_matches(jxent.js_divergence(p, q), reference("js_divergence", p, q), 1e-5)
    z = np.array([[0.0, -INF, 1.0], [2.0, -INF, -INF]], np.float32)
    np.testing.assert_array_equal(np.asarray(jxent.cross_entropy_from_logits(p, z)), [INF, 0.0])
    z_p = np.array([[0.0, 1.0, 2.0], [0.0, -INF, -INF]], np.float32)
    np.testing.assert_array_equal(np.asarray(jxent.kl_divergence_from_logits(z_p, z))[0], INF)
    assert np.asarray(jxent.kl_divergence_from_logits(z_p, z))[1] == 0.0
    np.testing.assert_array_equal(
        np.asarray(jxent.binary_cross_entropy([1.0, 0.0], [0.0, 1.0])), [INF, INF]
    )
    np.testing.assert_array_equal(
        np.asarray(jxent.binary_kl_divergence([1.0, 0.5], [0.0, 1.0])), [INF, INF]
    )


def test_binary_measures_match_float64(rng):
    p, q = binary_inputs(rng, 500)
    for name, (fn, arg_names) in BINARY.items():
        args = (p, q)[: len(arg_names)]
        got = fn(*args)
        chex.assert_shape(got, p.shape)
        chex.assert_type(got, jnp.float32)
        expected = reference(name, *args)
        if name == "binary_kl_divergence":
            # The two terms cancel when p ≈ q: absolute error in proportion to
            # their size and to p (one rounding of p / q).
            p64, q64 = f64(p), f64(q)
            scale = np.abs(special.rel_entr(p64, q64)) + np.abs(special.rel_entr(1 - p64, 1 - q64))
            assert_matches(got, expected, RTOL[name], 2.5e-7 * (p64 + scale))
        else:
            assert_matches(got, expected, RTOL[name])


def test_binary_measures_at_tiny_probabilities():
    p = np.array([1e-5, 1e-5, 2e-5, 0.0, 1e-7], np.float32)
    q = np.array([1e-5, 2e-5, 1e-5, 1e-5, 1e-6], np.float32)
    p64, q64 = f64(p), f64(q)
    expected_h = -(special.xlogy(p64, p64) + (1 - p64) * np.log1p(-p64))
    assert_matches(jxent.binary_entropy(p), expected_h, 2e-6)
    expected_ce = -(special.xlogy(p64, q64) + (1 - p64) * np.log1p(-q64))
    assert_matches(jxent.binary_cross_entropy(p, q), expected_ce, 2e-6)
    expected_kl = special.rel_entr(p64, q64) + (1 - p64) * np.log1p((q64 - p64) / (1 - q64))
    assert_matches(jxent.binary_kl_divergence(p, q), expected_kl, 1e-5, atol=1e-13)
    assert jxent.binary_kl_divergence(p, q)[0] == 0.0


def test_base_two_is_bits():
    one_bit = (
        jxent.entropy(jnp.array([0.5, 0.5, 0.0]), base=2),
        jxent.binary_entropy(0.5, base=2),
        jxent.cross_entropy_from_logits(jnp.array([1.0, 0.0]), jnp.zeros(2), base=2),
        jxent.kl_divergence(jnp.array([1.0, 0.0]), jnp.array([0.5, 0.5]), base=2),
    )
    chex.assert_trees_all_close(one_bit, (jnp.float32(1.0),) * 4, rtol=1e-7)


# --------------------------------------------------------------------------- transforms


def transform_args(name, rng):
    if name in BINARY:
        p, q = binary_inputs(rng, 0)
        return (p.reshape(2, 4), q.reshape(2, 4))[: len(BINARY[name][1])]
    return select(name, random_inputs(rng, (4, 6)))


@pytest.mark.parametrize("name", list(ALL))
def test_transforms_match_direct_call(name, rng):
    fn, _ = ALL[name]
    args = tuple(jnp.asarray(a) for a in transform_args(name, rng))
    argnums = tuple(range(len(args)))
    grad = jax.grad(lambda *a: fn(*a).sum(), argnums=argnums)

    @jax.jit
    def transformed(*a):
        return {
            "jit": fn(*a),
            "vmap": jax.vmap(fn)(*a),
            "scan": jax.lax.scan(lambda carry, xs: (carry, fn(*xs)), None, a)[1],
            "vmap_grad": jax.vmap(grad)(*a),
        }

    got = transformed(*args)
    direct = fn(*args)
    # The eager gradient of the sum is the per-row gradient: rows are independent.
    direct_grad = grad(*args)
    assert not any(np.isnan(np.asarray(g)).any() for g in direct_grad)
    chex.assert_trees_all_close(
        (got["jit"], got["vmap"], got["scan"]), (direct,) * 3, rtol=1e-6, atol=1e-7
    )
    # Gradients such as p (log p - log q - KL) cancel: a few ulps of their
    # terms, fused differently under jit, are a larger part of the result.
    chex.assert_trees_all_close(got["vmap_grad"], direct_grad, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("name", list(ALL))
def test_16_bit_inputs_are_computed_in_float32(name, dtype, rng):
    fn, _ = ALL[name]
    args = tuple(jnp.asarray(a, dtype) for a in transform_args(name, rng))
    value = fn(*args)
    chex.assert_type(value, jnp.float32)
    upcast = fn(*(a.astype(jnp.float32) for a in args))
    chex.assert_trees_all_close(value, upcast, rtol=1e-6)
    grads = jax.grad(lambda *a: fn(*a).sum(), argnums=tuple(range(len(args))))(*args)
    chex.assert_type(grads, [dtype] * len(args))
    # Mixed precision promotes to float32.
    if len(args) == 2:
        chex.assert_type(fn(args[0], args[1].astype(jnp.float32)), jnp.float32)


@pytest.mark.parametrize("name", list(ALL))
def test_float32_and_float64_are_kept(name, rng):
    fn, _ = ALL[name]
    args = transform_args(name, rng)
    chex.assert_type(fn(*args), jnp.float32)
    with jax.enable_x64(True):
        args64 = tuple(jnp.asarray(a, jnp.float64) for a in args)
        value = fn(*args64)
        chex.assert_type(value, jnp.float64)
        grads = jax.grad(lambda *a: fn(*a).sum(), argnums=tuple(range(len(args))))(*args64)
        chex.assert_type(grads, [jnp.float64] * len(args))
        # float64 really is computed in float64.
        expected = reference(name, *args64)
        np.testing.assert_allclose(np.asarray(value), expected, rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", [n for n in ALL if len(ALL[n][1]) == 2])
def test_shapes_that_cannot_broadcast(name):
    fn, (a, b) = ALL[name]
    match = rf"{a} of shape \(2, 3\) and {b} of shape \(2, 4\)"
    with pytest.raises(ValueError, match=match):
        fn(jnp.full((2, 3), 1 / 3), jnp.full((2, 4), 1 / 4))


@pytest.mark.parametrize("name", list(ALL))
def test_integer_arrays_are_rejected_naming_the_argument(name):
    fn, arg_names = ALL[name]
    for position, arg_name in enumerate(arg_names):
        args = [jnp.full((2, 3), 0.5) for _ in arg_names]
        args[position] = jnp.ones((2, 3), jnp.int32)
        with pytest.raises(TypeError, match=rf"^{arg_name} must be a floating-point array"):
            fn(*args)


@pytest.mark.parametrize("base", [0, -2.0, 1, 1.0, INF, NAN])
@pytest.mark.parametrize("name", list(ALL))
def test_bad_base(name, base):
    fn, arg_names = ALL[name]
    args = [jnp.full((3,), 1 / 3)] * len(arg_names)
    with pytest.raises(ValueError, match="base must be positive"):
        fn(*args, base=base)


def test_base_that_is_not_a_number():
    with pytest.raises(TypeError, match="base"):
        jxent.entropy(jnp.full(3, 1 / 3), base="two")
    with pytest.raises(TypeError, match="base"):
        jax.jit(lambda b: jxent.kl_divergence(jnp.ones(2) / 2, jnp.ones(2) / 2, base=b))(2.0)


@pytest.mark.parametrize("name", list(MEASURES))
def test_bad_where_and_axis(name):
    fn, arg_names = MEASURES[name]
    args = [jnp.full((2, 4), 0.25)] * len(arg_names)
    with pytest.raises(ValueError, match=r"where of shape \(3,\) does not broadcast"):
        fn(*args, where=jnp.ones(3, bool))
    with pytest.raises(ValueError, match=r"where of shape \(2, 2, 4\) does not broadcast"):
        fn(*args, where=jnp.ones((2, 2, 4), bool))
    with pytest.raises(TypeError, match="where must be a boolean array"):
        fn(*args, where=jnp.ones(4, jnp.int32))
    with pytest.raises(TypeError, match="where must be a boolean array"):
        fn(*args, where=jnp.ones(4))
    with pytest.raises(ValueError, match="axis=2 is out of range"):
        fn(*args, axis=2)
    with pytest.raises(ValueError, match="axis"):
        fn(*args, axis=(1, -1))
    with pytest.raises(TypeError, match="axis"):
        fn(*args, axis=(0.5,))


@pytest.mark.parametrize("name", list(ALL))
def test_nan_inputs_propagate(name, rng):
    fn, arg_names = ALL[name]
    clean = transform_args(name, rng)
    expected = np.asarray(fn(*clean))
    for position in range(len(arg_names)):
        args = [np.array(a) for a in clean]
        args[position][0, 1] = NAN
        got = np.array(fn(*args))
        if name in BINARY:
            assert np.isnan(got[0, 1])
            got[0, 1] = expected[0, 1]
        else:
            assert np.isnan(got[0])
            got[0] = expected[0]
        np.testing.assert_array_equal(got, expected)


def test_negative_probabilities_give_nan():
    bad = jnp.array([-0.5, 1.5])
    good = jnp.array([0.5, 0.5])
    assert jnp.isnan(jxent.entropy(bad))
    assert jnp.isnan(jxent.cross_entropy(good, bad))
    assert jnp.isnan(jxent.kl_divergence(good, bad))
    assert jnp.isnan(jxent.kl_divergence(bad, good))
    assert jnp.isnan(jxent.js_divergence(bad, good))
    assert jnp.isnan(jxent.binary_entropy(-0.5))
    assert jnp.isnan(jxent.binary_cross_entropy(0.5, -0.5))


def test_masked_garbage_does_not_leak():
    where = np.array([True, True, False, True])
    p = np.array([0.5, 0.25, NAN, 0.25], np.float32)
    q = np.array([0.25, 0.5, -1.0, 0.25], np.float32)
    z = np.array([0.0, 1.0, NAN, 2.0], np.float32)
    w = np.array([1.0, 0.0, INF, -1.0], np.float32)
    for fn, args in (
        (jxent.entropy, (p,)),
        (jxent.cross_entropy, (p, q)),
        (jxent.kl_divergence, (p, q)),
        (jxent.js_divergence, (p, q)),
        (jxent.entropy_from_logits, (z,)),
        (jxent.cross_entropy_from_logits, (p, z)),
        (jxent.kl_divergence_from_logits, (z, w)),
    ):
        value, grads = jax.value_and_grad(
            lambda *a, fn=fn: fn(*a, where=jnp.asarray(where)), argnums=tuple(range(len(args)))
        )(*args)
        chex.assert_tree_all_finite((value, grads))
        for g in grads:
            assert g[2] == 0.0
