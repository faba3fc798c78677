"""One input contract for every probability measure (README, "Public names").

Probabilities are used as given, never renormalised: α = 1, β = ½ and the
Shannon counterparts agree on the same input, normalised or not; negative and
NaN probabilities give NaN, and the validation mode reports them, unnormalised
inputs and NaN logits for every argument of every measure; divergences are
never negative; option domains, empty class axes and non-int axes raise
naming the argument; empty batches work.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify
from measure_cases import ref_renyi_divergence, ref_renyi_entropy
from scipy import special

import jxent

INF, NAN = np.inf, np.nan

# name -> (function of the array arguments, kinds, argument names). Kinds: "p"
# probabilities over the last axis, "z" logits, "b" elementwise probabilities,
# "j" a joint table [..., X, Y].
MEASURES = {
    "entropy": (jxent.entropy, "p", ("probs",)),
    "cross_entropy": (jxent.cross_entropy, "pp", ("p", "q")),
    "kl_divergence": (jxent.kl_divergence, "pp", ("p", "q")),
    "js_divergence": (jxent.js_divergence, "pp", ("p", "q")),
    "entropy_from_logits": (jxent.entropy_from_logits, "z", ("logits",)),
    "cross_entropy_from_logits": (jxent.cross_entropy_from_logits, "pz", ("p", "q_logits")),
    "kl_divergence_from_logits": (jxent.kl_divergence_from_logits, "zz", ("p_logits", "q_logits")),
    "renyi_entropy": (lambda p: jxent.renyi_entropy(p, 2.0), "p", ("probs",)),
    "renyi_entropy_from_logits": (
        lambda z: jxent.renyi_entropy_from_logits(z, 0.5),
        "z",
        ("logits",),
    ),
    "renyi_divergence": (lambda p, q: jxent.renyi_divergence(p, q, 0.5), "pp", ("p", "q")),
    "renyi_divergence_from_logits": (
        lambda a, b: jxent.renyi_divergence_from_logits(a, b, 3.0),
        "zz",
        ("p_logits", "q_logits"),
    ),
    "generalized_js_divergence": (
        lambda p, q: jxent.generalized_js_divergence(p, q, 0.3),
        "pp",
        ("p", "q"),
    ),
    "generalized_js_divergence_from_logits": (
        lambda a, b: jxent.generalized_js_divergence_from_logits(a, b, 0.3),
        "zz",
        ("p_logits", "q_logits"),
    ),
    "mutual_information": (jxent.mutual_information, "j", ("joint",)),
    "conditional_entropy": (jxent.conditional_entropy, "j", ("joint",)),
    "binary_entropy": (jxent.binary_entropy, "b", ("p",)),
    "binary_cross_entropy": (jxent.binary_cross_entropy, "bb", ("p", "q")),
    "binary_kl_divergence": (jxent.binary_kl_divergence, "bb", ("p", "q")),
}
JITTED = {name: jax.jit(fn) for name, (fn, _, _) in MEASURES.items()}


def good(kind, rng, batch=4):
    """A float32 argument of ``kind``, normalised, with one exact zero per row."""
    if kind == "z":
        return rng.normal(size=(batch, 5)).astype(np.float32)
    if kind == "b":
        return rng.uniform(0.05, 0.95, (batch, 5)).astype(np.float32)
    shape = (batch, 3, 4) if kind == "j" else (batch, 5)
    x = rng.dirichlet(np.ones(int(np.prod(shape[1:]))), batch).reshape(shape)
    x[:, 0, ...] = 0.0 if kind == "p" else x[:, 0, ...]
    x /= x.sum(axis=tuple(range(1, x.ndim)), keepdims=True)
    return x.astype(np.float32)


def unnormalised(kind, rng, batch=4):
    """Non-negative values whose rows sum to between 0.2 and 3 (logits unchanged)."""
    x = good(kind, rng, batch)
    if kind in "pj":
        x *= rng.uniform(0.2, 3.0, (batch,) + (1,) * (x.ndim - 1)).astype(np.float32)
    return x


def spoil(kind, x, problem):
    """``x`` with row 0 made bad in the way ``problem`` names."""
    x = np.array(x)
    first = (0,) * x.ndim
    if problem == "NaN":
        x[first] = NAN
    elif problem == "negative":  # still summing to 1
        if kind != "b":
            x[(0,) * (x.ndim - 1) + (1,)] += x[first] + 0.25
        x[first] = -0.25
    elif problem == "unnormalised":
        x[0] *= 1.5
    elif problem == "above one":
        x[first] = 1.25
    return x


PROBLEMS = {"p": ["negative", "unnormalised", "NaN"], "z": ["NaN"]}
PROBLEMS |= {"j": PROBLEMS["p"], "b": ["negative", "above one", "NaN"]}
CASES = [
    (name, position, problem)
    for name, (_, kinds, _) in MEASURES.items()
    for position, kind in enumerate(kinds)
    for problem in PROBLEMS[kind]
]


# --------------------------------------------------------------------------- the validation mode


@pytest.mark.parametrize(("name", "position", "problem"), CASES)
def test_checked_reports_every_bad_input_of_every_measure(name, position, problem, rng):
    fn, kinds, arg_names = MEASURES[name]
    args = [good(kind, rng) for kind in kinds]
    args[position] = spoil(kinds[position], args[position], problem)
    error, out = jax.jit(jxent.checked(fn))(*args)
    assert error.get() is not None
    with pytest.raises(checkify.JaxRuntimeError, match=rf"jxent: {arg_names[position]} "):
        error.throw()
    # The plain function's value: NaN for the bad row only, unless the
    # input is merely unnormalised (then finite: the formula as given).
    plain = np.asarray(JITTED[name](*args))
    np.testing.assert_array_equal(np.asarray(out), plain)
    bad = np.isnan(plain).reshape(len(plain), -1).any(-1)
    np.testing.assert_array_equal(bad, [problem != "unnormalised", False, False, False])


@pytest.mark.parametrize("name", list(MEASURES))
def test_checked_is_silent_on_good_input(name, rng):
    fn, kinds, _ = MEASURES[name]
    args = [good(kind, rng) for kind in kinds]
    error, out = jax.jit(jxent.checked(fn))(*args)
    assert error.get() is None
    chex.assert_tree_all_finite(out)


def test_masked_classes_are_not_checked():
    p = jnp.array([[0.5, 0.5, NAN], [0.25, 0.75, -3.0]])
    where = jnp.array([True, True, False])
    for fn in (jxent.entropy, lambda x, where: jxent.renyi_divergence(x, x, 2.0, where=where)):
        error, out = jax.jit(jxent.checked(lambda x, fn=fn: fn(x, where=where)))(p)
        assert error.get() is None
        chex.assert_tree_all_finite(out)


# --------------------------------------------------------------------------- one rule


def _pairs(x):
    return jnp.stack([x, 1 - x], -1)


@jax.jit
def _counterparts(p, q, a, b, joint, pb, qb):
    """(measure, its Shannon counterpart) pairs, all computed in one jitted call."""
    softmax = jax.nn.softmax
    n = joint.shape[0]
    flat = joint.reshape(n, -1)
    marginals = (joint.sum(-1)[:, :, None] * joint.sum(-2)[:, None, :]).reshape(n, -1)
    sa, sb = softmax(a), softmax(b)
    return [
        (jxent.renyi_entropy(p, 1.0), jxent.entropy(p)),
        (jxent.renyi_divergence(p, q, 1.0), jxent.kl_divergence(p, q)),
        (jxent.generalized_js_divergence(p, q, 0.5), jxent.js_divergence(p, q)),
        (jxent.cross_entropy(p, p), jxent.entropy(p)),
        (jxent.cross_entropy_from_logits(p, b), jxent.cross_entropy(p, sb)),
        (jxent.renyi_entropy_from_logits(a, 1.0), jxent.entropy_from_logits(a)),
        (jxent.renyi_divergence_from_logits(a, b, 1.0), jxent.kl_divergence_from_logits(a, b)),
        (jxent.entropy_from_logits(a), jxent.entropy(sa)),
        (jxent.kl_divergence_from_logits(a, b), jxent.kl_divergence(sa, sb)),
        (jxent.generalized_js_divergence_from_logits(a, b, 0.5), jxent.js_divergence(sa, sb)),
        (jxent.mutual_information(joint), jxent.kl_divergence(flat, marginals)),
        (jxent.conditional_entropy(joint), jxent.entropy(flat) - jxent.entropy(joint.sum(-2))),
        (jxent.binary_entropy(pb), jxent.entropy(_pairs(pb))),
        (jxent.binary_cross_entropy(pb, qb), jxent.cross_entropy(_pairs(pb), _pairs(qb))),
        (jxent.binary_kl_divergence(pb, qb), jxent.kl_divergence(_pairs(pb), _pairs(qb))),
        # Rényi is continuous through α = 1 on unnormalised input too.
        (jxent.renyi_entropy(p, 1 - 1e-4), jxent.entropy(p)),
        (jxent.renyi_entropy(p, 1 + 1e-4), jxent.entropy(p)),
        (jxent.renyi_divergence(p, q, 1 - 1e-4), jxent.kl_divergence(p, q)),
        (jxent.renyi_divergence(p, q, 1 + 1e-4), jxent.kl_divergence(p, q)),
    ]


@pytest.mark.parametrize("normalised", [True, False])
def test_alpha_one_beta_half_and_shannon_counterparts_agree(normalised, rng):
    make = good if normalised else unnormalised
    p, q = make("p", rng, 16), make("p", rng, 16)
    a, b = good("z", rng, 16), good("z", rng, 16)
    pb, qb = p[:, 1], q[:, 1] / q[:, 1].max()  # elementwise, in [0, 1]
    pairs = _counterparts(p, q, a, b, make("j", rng, 16), pb, qb)
    for got, want in pairs[:-4]:
        chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-6)
    for got, want in pairs[-4:]:  # 1e-4 away from α = 1
        chex.assert_trees_all_close(got, want, rtol=1e-3, atol=1e-4)


def test_unnormalised_input_is_the_formula_as_given(rng):
    p, q = unnormalised("p", rng, 16), unnormalised("p", rng, 16)
    p64, q64 = p.astype(np.float64), q.astype(np.float64)
    m = (p64 + q64) / 2
    expected = [
        special.entr(p64).sum(-1),
        -special.xlogy(p64, q64).sum(-1),
        special.kl_div(p64, q64).sum(-1),  # Σ p log(p/q) - p + q, never negative
        ((special.rel_entr(p64, m) + special.rel_entr(q64, m)) / 2).sum(-1),
    ]
    got = [f(p, q) for f in (lambda p, q: jxent.entropy(p), jxent.cross_entropy)] + [
        jxent.kl_divergence(p, q),
        jxent.js_divergence(p, q),
    ]
    for g, e in zip(got, expected):
        np.testing.assert_allclose(np.asarray(g, np.float64), e, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1 - 1e-4, 1.0, 1 + 1e-4, 2.0, 50.0, INF])
def test_renyi_of_unnormalised_input_matches_float64(alpha, rng):
    p, q = unnormalised("p", rng, 64), unnormalised("p", rng, 64)
    a = float(np.float32(alpha))  # the order jxent computes with
    h = jax.jit(jxent.renyi_entropy)(p, alpha)
    d = jax.jit(jxent.renyi_divergence)(p, q, alpha)
    # Absolute 1e-6 near 0: with s = Σp > 1, H_α = s H_α(P/s) - s log s is a
    # difference (so is -Σ p log p, where p > 1).
    np.testing.assert_allclose(np.asarray(h, np.float64), ref_renyi_entropy(p, a), 2e-6, 1e-6)
    np.testing.assert_allclose(np.asarray(d, np.float64), ref_renyi_divergence(p, q, a), 1e-5, 1e-6)


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.75, 1.0])
def test_generalized_js_of_unnormalised_input_matches_float64(beta, rng):
    p, q = unnormalised("p", rng, 64), unnormalised("p", rng, 64)
    p64, q64 = p.astype(np.float64), q.astype(np.float64)
    m = beta * p64 + (1 - beta) * q64
    expected = (beta * special.rel_entr(p64, m) + (1 - beta) * special.rel_entr(q64, m)).sum(-1)
    got = jax.jit(jxent.generalized_js_divergence)(p, q, beta)
    np.testing.assert_allclose(np.asarray(got, np.float64), expected, rtol=1e-5, atol=1e-7)


EDGE_PAIRS = [
    ([0.5, 0.5, 0.0], [0.25, 0.25, 0.5]),  # Q has mass off P's support
    ([0.5, 0.5, 0.0], [1.0, 0.0, 0.0]),  # Q misses part of P's support
    ([0.0, 0.0, 0.0], [0.2, 0.8, 0.0]),  # P is empty
    ([0.2, 0.8, 0.0], [0.2, 0.8, 0.0]),  # P = Q
]


@jax.jit
def _edge_derivatives(p, q, order):
    def logits(x):
        return jnp.where(x > 0, jnp.log(jnp.where(x > 0, x, 1.0)), -jnp.inf)

    functions = [
        lambda p, q: jxent.renyi_entropy(p, order),
        lambda p, q: jxent.renyi_divergence(p, q, order),
        lambda p, q: jxent.renyi_divergence_from_logits(logits(p), logits(q), order),
        lambda p, q: jxent.generalized_js_divergence(p, q, jnp.minimum(order, 1.0)),
    ]
    return [(jax.grad(f, (0, 1))(p, q), jax.hessian(f, (0, 1))(p, q)) for f in functions]


@pytest.mark.parametrize(("p", "q"), EDGE_PAIRS)
def test_renyi_and_generalized_js_derivatives_at_the_edges_are_never_nan(p, q):
    p, q = jnp.asarray(p), jnp.asarray(q)
    for order in [0.0, 0.3, 0.5, 1.0, 2.0, INF]:
        for leaf in jax.tree_util.tree_leaves(_edge_derivatives(p, q, order)):
            assert not np.isnan(np.asarray(leaf)).any(), (order, leaf)


# --------------------------------------------------------------------------- never negative


def test_kl_from_logits_of_nearly_equal_logits_is_not_negative(rng):
    z = rng.normal(size=(64, 10)).astype(np.float32) * np.float32(rng.uniform(0.1, 30, (64, 1)))
    shifted = z + np.float32(1e-3)
    got = np.asarray(jax.jit(jxent.kl_divergence_from_logits)(z, shifted), np.float64)
    log_p = special.log_softmax(z.astype(np.float64), -1)
    log_q = special.log_softmax(shifted.astype(np.float64), -1)
    expected = (np.exp(log_p) * (log_p - log_q)).sum(-1)
    assert np.all(got >= 0)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-12)
    others = jax.jit(
        lambda a, b: (
            jxent.renyi_divergence_from_logits(a, b, 1.0),
            jxent.renyi_divergence_from_logits(a, b, 2.0),
            jxent.generalized_js_divergence_from_logits(a, b, 0.3),
        )
    )
    for value in others(z, shifted):
        assert np.all(np.asarray(value) >= 0)
