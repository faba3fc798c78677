"""One input contract for every probability measure (README, "Public names").

Probabilities are used as given, never renormalised: α = 1, β = ½ and the
Shannon counterparts agree on the same input, normalised or not (each against
float64 on unnormalised rows: the case table, test_measures.py); negative and
NaN probabilities give NaN, and the validation mode reports them, unnormalised
inputs and NaN logits for every argument of every measure; divergences are
never negative. Option domains, empty class axes and non-int axes:
test_measures_domains.py.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify
from measure_cases import MEASURES
from scipy import special

import jxent

INF, NAN = np.inf, np.nan

# One case per public function (measure_cases.MEASURES): its kinds of arguments ("p"
# probabilities over the last axis, "z" logits, "b" elementwise probabilities, "j" a
# joint table [..., X, Y]) and their names. Jitted once per measure: the bad inputs of
# every argument share the compilation.
CASES = {case.id: case for case in MEASURES}
JITTED = {name: jax.jit(case) for name, case in CASES.items()}
CHECKED = {name: jax.jit(jxent.checked(case)) for name, case in CASES.items()}


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
BAD_INPUTS = [
    (name, position, problem)
    for name, case in CASES.items()
    for position, kind in enumerate(case.kinds)
    for problem in PROBLEMS[kind]
]


# --------------------------------------------------------------------------- the validation mode


@pytest.mark.parametrize(("name", "position", "problem"), BAD_INPUTS)
def test_checked_reports_every_bad_input_of_every_measure(name, position, problem, rng):
    kinds, arg_names = CASES[name].kinds, CASES[name].argument_names
    args = [good(kind, rng) for kind in kinds]
    args[position] = spoil(kinds[position], args[position], problem)
    error, out = CHECKED[name](*args)
    assert error.get() is not None
    with pytest.raises(checkify.JaxRuntimeError, match=rf"jxent: {arg_names[position]} "):
        error.throw()
    # The plain function's value: NaN for the bad row only, unless the
    # input is merely unnormalised (then finite: the formula as given).
    plain = np.asarray(JITTED[name](*args))
    np.testing.assert_array_equal(np.asarray(out), plain)
    bad = np.isnan(plain).reshape(len(plain), -1).any(-1)
    np.testing.assert_array_equal(bad, [problem != "unnormalised", False, False, False])


@pytest.mark.parametrize("name", list(CASES))
def test_checked_is_silent_on_good_input(name, rng):
    args = [good(kind, rng) for kind in CASES[name].kinds]
    error, out = CHECKED[name](*args)
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
