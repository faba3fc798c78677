"""Derivatives of the measures: check_grads orders 1 and 2 (forward and reverse mode, in
float64) for every case of the table that asks (measure_cases.CASES: Shannon, binary,
Rényi and generalised JS in their arrays and their option, MI, conditional entropy),
closed forms, and the absence of NaN at the edges (zeros, -inf logits, masked rows,
one-hot P). The Jensen–Shannon family's closed forms are in test_jensen.py.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from measure_cases import (
    BY_NAME,
    CASES,
    all_derivatives,
    assert_all_modes,
    assert_no_nan,
    derivatives,
    hessian_blocks,
    interior,
    pairs_with_edges,
)

import jxent

INF = np.inf
NAN = np.nan
GRADS = [case for case in CASES if case.grads]


def f64(x):
    return np.asarray(x, np.float64)


def random_point(kind, rng, shape, interior):
    """A float64 argument: interior points are well inside the domain."""
    if kind == "p":
        x = (
            rng.uniform(0.5, 1.5, shape)
            if interior
            else rng.dirichlet(np.ones(shape[-1]), shape[:-1])
        )
        if not interior:
            x = np.where(rng.random(shape) < 0.35, 0.0, x)
        return x / np.maximum(x.sum(-1, keepdims=True), 1e-300)
    if kind == "z":
        z = rng.normal(size=shape) * 2
        return z if interior else np.where(rng.random(shape) < 0.35, -INF, z)
    return rng.uniform(0.1, 0.9, shape)  # binary


# --------------------------------------------------------------------------- check_grads


def _grads_groups():
    """The cases that take check_grads, those of one family with the same option
    together (Rényi's entropy and divergence at one α, the generalised JS divergence of
    probabilities and of logits at one β, the joint tables' measures)."""
    groups = {}
    for case in GRADS:
        key = (case.family or case.name, case.option, case.grads_order, case.d_option)
        groups.setdefault(key, []).append(case)
    return [pytest.param(cases, id="+".join(c.id for c in cases)) for cases in groups.values()]


@functools.cache
def _together(members, d_option):
    """The measures ``members`` ((name, keywords, number of arrays), ...) as one jitted
    function of all their arrays, then the option: compiled once for every option."""

    def fn(*args):
        arrays, option = (args[:-1], args[-1:]) if d_option else (args, ())
        values, start = [], 0
        for name, keywords, count in members:
            measure = getattr(jxent, name)
            values.append(measure(*arrays[start : start + count], *option, **dict(keywords)))
            start += count
        return values

    return jax.jit(fn)


@pytest.mark.parametrize("cases", _grads_groups())
def test_check_grads_orders_one_and_two_float64(cases, x64, rng):
    # Interior points (probabilities >= ~0.05, off the simplex too: the measures are
    # defined and smooth there), so that central differences are reliable. The option
    # (α, β) is differentiated too, except at the edge of its domain.
    case = cases[0]
    args = [jnp.asarray(a) for c in cases for a in interior(c, rng)]
    assert all(a.dtype == jnp.float64 for a in args)
    members = tuple((c.name, c.keywords, len(c.kinds)) for c in cases)
    if case.d_option:
        fn = _together(members, True)
        args.append(jnp.float64(case.option))
    elif case.option is not None:
        fn = lambda *a: _together(members, True)(*a, case.option)  # noqa: E731
    elif len(cases) == 1:  # eagerly: the small operations compiled for one serve the next
        fn = case
    else:
        fn = _together(members, False)
    # eps = 1e-6: central differences of 1/p-like second derivatives need it.
    check_grads(fn, args, order=case.grads_order, modes=("fwd", "rev"), eps=1e-6)


# --------------------------------------------------------------------------- probabilities


def test_entropy_gradient_at_zero_is_inf_not_nan():
    for mode, got in derivatives(jxent.entropy, (jnp.array([0.0, 1.0]),), 0).items():
        np.testing.assert_array_equal(np.asarray(got), [INF, -1], err_msg=mode)
    # jax's own entr gives NaN here (eagerly: under jit XLA may simplify it away).
    entr = jax.jacfwd(lambda p: jax.scipy.special.entr(p).sum())
    assert np.isnan(np.asarray(entr(jnp.array([0.0, 1.0])))).any()


def test_entropy_derivatives_match_closed_form(x64, rng):
    p = jnp.asarray(random_point("p", rng, (7,), False))
    p64 = f64(p)
    with np.errstate(divide="ignore"):
        assert_all_modes(jxent.entropy, (p,), 0, -(np.log(p64) + 1))
        expected_hessian = np.diag(-1 / p64)
    hessian = f64(hessian_blocks(jxent.entropy, (p,))[0][0])
    np.testing.assert_allclose(hessian, expected_hessian, rtol=1e-12)


def test_cross_entropy_gradients_at_zeros():
    p = q = jnp.array([1.0, 0.0])
    for argnum, expected in [(0, [0, INF]), (1, [-1, 0])]:
        for mode, got in derivatives(jxent.cross_entropy, (p, q), argnum).items():
            np.testing.assert_array_equal(np.asarray(got), expected, err_msg=mode)


def test_cross_entropy_derivatives_match_closed_form(x64, rng):
    p, q = pairs_with_edges(rng)
    args = (jnp.asarray(p), jnp.asarray(q))
    (pp, pq), (qp, qq) = hessian_blocks(jxent.cross_entropy, args)
    with np.errstate(divide="ignore", invalid="ignore"):
        assert_all_modes(jxent.cross_entropy, args, 0, -np.log(q))
        assert_all_modes(jxent.cross_entropy, args, 1, np.where(p == 0, 0.0, -p / q))
        expected_pq = np.diag(-1 / q)
        expected_qq = np.diag(np.where(p == 0, 0.0, p / q**2))
    np.testing.assert_array_equal(f64(pp), np.zeros((9, 9)))
    np.testing.assert_allclose(f64(pq), expected_pq, rtol=1e-12)
    np.testing.assert_allclose(f64(qp), expected_pq, rtol=1e-12)
    np.testing.assert_allclose(f64(qq), expected_qq, rtol=1e-12)


def test_kl_derivatives_match_closed_form(x64, rng):
    p, q = pairs_with_edges(rng)
    args = (jnp.asarray(p), jnp.asarray(q))
    (pp, pq), (qp, qq) = hessian_blocks(jxent.kl_divergence, args)
    # KL is Σ p log(p/q) - p + q (the same on distributions): d/dp = log(p/q),
    # d/dq = 1 - p/q.
    with np.errstate(divide="ignore", invalid="ignore"):
        d_p = np.log(p) - np.log(q)
        d_p[0] = INF  # convention at p = q = 0: any increase of p makes KL infinite
        assert_all_modes(jxent.kl_divergence, args, 0, d_p)
        assert_all_modes(jxent.kl_divergence, args, 1, 1 - np.where(p == 0, 0.0, p / q))
        expected = [np.diag(1 / p), np.diag(-1 / q), np.diag(-1 / q), np.diag(p / q**2)]
    assert_no_nan((pp, pq, qp, qq))
    # Away from the p = q = 0 corner (a kink, not a point of twice-differentiability).
    keep = np.arange(1, 9)
    for got, want in zip((pp, pq, qp, qq), expected):
        np.testing.assert_allclose(f64(got)[1:, 1:], want[np.ix_(keep, keep)], rtol=1e-12)


def test_kl_gradient_at_p_equal_q_equal_zero_is_plus_inf():
    p = q = jnp.array([0.0, 1.0])
    for mode, got in derivatives(jxent.kl_divergence, (p, q), 0).items():
        np.testing.assert_array_equal(np.asarray(got), [INF, 0.0], err_msg=mode)
    for mode, got in derivatives(jxent.kl_divergence, (p, q), 1).items():
        np.testing.assert_array_equal(np.asarray(got), [1.0, 0.0], err_msg=mode)


# --------------------------------------------------------------------------- logits


def softmax64(z):
    z = f64(z)
    finite = np.isfinite(z)
    e = np.where(finite, np.exp(z - np.max(z, -1, keepdims=True)), 0.0)
    return e / e.sum(-1, keepdims=True)


def safe_log(p):
    with np.errstate(divide="ignore"):
        return np.where(p > 0, np.log(np.where(p > 0, p, 1.0)), 0.0)


def test_entropy_from_logits_derivatives_match_closed_form(x64, rng):
    z = jnp.asarray(random_point("z", rng, (8,), False)).at[0].set(-INF).at[1].set(3.0)
    p = softmax64(z)
    log_p = safe_log(p)  # p log p := 0 on -inf classes
    h = -np.sum(p * log_p)
    grad = -p * (log_p + h)
    assert_all_modes(jxent.entropy_from_logits, (z,), 0, grad, rtol=1e-10, atol=1e-15)
    eye = np.eye(8)
    # d(-p_j (l_j + H))/dz_i with dp_j/dz_i = p_j (δ_ij - p_i), dl_j/dz_i = δ_ij - p_i.
    d = eye - p[:, None]  # d[i, j] = δ_ij - p_i
    hessian = -p[None, :] * d * (log_p[None, :] + h + 1) + np.outer(p, p) * (log_p[:, None] + h)
    got = f64(hessian_blocks(jxent.entropy_from_logits, (z,))[0][0])
    chex.assert_tree_all_finite(got)
    np.testing.assert_allclose(got, hessian, rtol=1e-9, atol=1e-15)
    np.testing.assert_array_equal(got[0], np.zeros(8))


def test_entropy_from_logits_masked_classes_get_zero_gradient(rng):
    z = jnp.asarray(rng.normal(size=6), jnp.float32).at[2].set(NAN).at[4].set(INF)
    where = jnp.array([True, True, False, True, False, True])
    fn = lambda v: jxent.entropy_from_logits(v, where=where)  # noqa: E731
    kept = z[np.asarray(where)]
    expected = np.asarray(derivatives(jxent.entropy_from_logits, (kept,), 0)["grad"])
    for mode, got in derivatives(fn, (z,), 0).items():
        chex.assert_tree_all_finite(got)
        np.testing.assert_array_equal(np.asarray(got)[[2, 4]], [0.0, 0.0], err_msg=mode)
        np.testing.assert_allclose(
            np.asarray(got)[np.asarray(where)], expected, rtol=1e-5, atol=1e-7
        )
    chex.assert_tree_all_finite(hessian_blocks(fn, (z,)))


def test_cross_entropy_from_logits_derivatives_match_closed_form(x64, rng):
    z = jnp.asarray(random_point("z", rng, (8,), False)).at[0].set(-INF).at[1].set(1.0)
    p = random_point("p", rng, (8,), True) * 0.7  # Σp = 0.7 shows up in the gradient
    p[0] = 0.0
    q = softmax64(z)
    args = (jnp.asarray(p), z)
    assert_all_modes(jxent.cross_entropy_from_logits, args, 1, q * p.sum() - p, 1e-10, 1e-15)
    with np.errstate(divide="ignore"):
        assert_all_modes(jxent.cross_entropy_from_logits, args, 0, -np.log(q), rtol=1e-10)
    hessian = f64(hessian_blocks(jxent.cross_entropy_from_logits, args)[1][1])
    np.testing.assert_allclose(hessian, p.sum() * (np.diag(q) - np.outer(q, q)), atol=1e-14)


def test_kl_divergence_from_logits_derivatives_match_closed_form(x64, rng):
    a = jnp.asarray(random_point("z", rng, (8,), False)).at[0].set(-INF).at[1].set(2.0)
    b = jnp.asarray(random_point("z", rng, (8,), True)).at[0].set(-INF)
    p, q = softmax64(a), softmax64(b)
    log_p, log_q = safe_log(p), safe_log(q)
    kl = np.sum(p * (log_p - log_q))
    args = (a, b)
    assert_no_nan(hessian_blocks(jxent.kl_divergence_from_logits, args))
    assert_all_modes(
        jxent.kl_divergence_from_logits, args, 0, p * (log_p - log_q - kl), 1e-9, 1e-15
    )
    assert_all_modes(jxent.kl_divergence_from_logits, args, 1, q - p, 1e-9, 1e-15)


def test_kl_divergence_from_logits_zero_probability_class_when_kl_is_infinite():
    # Q misses part of P's support: KL = +inf; a class with p_j = 0 still gets
    # gradient 0 (never NaN) in forward and reverse mode.
    a = jnp.array([0.0, 1.0, -INF, 2.0])
    b = jnp.array([1.0, 0.0, 3.0, -INF])
    assert jxent.kl_divergence_from_logits(a, b) == INF
    for mode, got in derivatives(jxent.kl_divergence_from_logits, (a, b), 0).items():
        np.testing.assert_array_equal(np.asarray(got)[:3], [-INF, -INF, 0.0], err_msg=mode)


def test_one_hot_p(rng):
    z = jnp.asarray(rng.normal(size=5), jnp.float32)
    one_hot = jnp.zeros(5).at[2].set(1.0)
    q = jax.nn.softmax(z)
    for mode, got in derivatives(jxent.cross_entropy_from_logits, (one_hot, z), 1).items():
        np.testing.assert_allclose(np.asarray(got), q - one_hot, rtol=1e-5, atol=1e-7, err_msg=mode)
    grads = derivatives(jxent.entropy, (one_hot,), 0)
    for got in grads.values():
        np.testing.assert_array_equal(np.asarray(got), [INF, INF, -1.0, INF, INF])
    for got in derivatives(jxent.kl_divergence, (one_hot, q), 1).values():
        np.testing.assert_allclose(np.asarray(got), 1 - one_hot / q, rtol=1e-6)
    a = jnp.full(5, -INF).at[2].set(0.0)
    assert_no_nan(hessian_blocks(jxent.kl_divergence_from_logits, (a, z)))
    for got in derivatives(jxent.kl_divergence_from_logits, (a, z), 0).values():
        np.testing.assert_array_equal(np.asarray(got), np.zeros(5))
    for got in derivatives(jxent.kl_divergence_from_logits, (a, z), 1).values():
        np.testing.assert_allclose(np.asarray(got), q - one_hot, rtol=1e-5, atol=1e-7)


SHANNON = ["entropy", "cross_entropy", "kl_divergence", "js_divergence"]
SHANNON += ["entropy_from_logits", "cross_entropy_from_logits", "kl_divergence_from_logits"]


@pytest.mark.parametrize("name", SHANNON)
def test_all_masked_rows_are_empty(name, rng):
    fn = BY_NAME[name].fn
    garbage = jnp.asarray(rng.normal(size=(2, 5)), jnp.float32).at[0, 1].set(NAN)
    args = (garbage,) * len(BY_NAME[name].kinds)
    where = jnp.zeros((2, 5), bool).at[1].set(True)
    masked = lambda *a: fn(*a, where=where)[0]  # noqa: E731
    assert all_derivatives(masked, args, with_hessian=True)["value"] == 0.0
    for block in jax.tree_util.tree_leaves(hessian_blocks(masked, args)):
        np.testing.assert_array_equal(np.asarray(block)[0, :, 0], np.zeros((5, 5)))
    for argnum in range(len(args)):
        for mode, got in derivatives(masked, args, argnum).items():
            np.testing.assert_array_equal(np.asarray(got)[0], np.zeros(5), err_msg=mode)


def test_all_minus_inf_logits_are_empty():
    empty = jnp.full(4, -INF)
    z = jnp.array([0.0, 1.0, 2.0, 3.0])
    for fn, args in (
        (jxent.entropy_from_logits, (empty,)),
        (jxent.kl_divergence_from_logits, (empty, z)),
        (jxent.kl_divergence_from_logits, (empty, empty)),
        (jxent.cross_entropy_from_logits, (jnp.zeros(4), empty)),
    ):
        assert fn(*args) == 0.0
        hessian = hessian_blocks(fn, args)
        assert_no_nan(hessian)
        for got in derivatives(fn, args, len(args) - 1).values():
            np.testing.assert_array_equal(np.asarray(got), np.zeros(4))
        if fn is jxent.entropy_from_logits:
            np.testing.assert_array_equal(np.asarray(hessian[0][0]), np.zeros((4, 4)))


# --------------------------------------------------------------------------- binary


def xdivy(x, y):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x == 0, 0.0, x / y)


def test_binary_derivatives_match_closed_form(x64, rng):
    p = np.concatenate([[0.0, 1.0, 0.0, 1.0, 1e-5, 0.3], rng.uniform(0, 1, 6)])
    q = np.concatenate([[0.5, 0.5, 1e-5, 1 - 1e-5, 2e-5, 0.3], rng.uniform(0, 1, 6)])
    pj, qj = jnp.asarray(p), jnp.asarray(q)
    with np.errstate(divide="ignore"):
        d_h = np.log1p(-p) - np.log(p)
        d_ce_p = np.log1p(-q) - np.log(q)
        d_kl_p = np.log(p) - np.log(q) - (np.log1p(-p) - np.log1p(-q))
    d_q = xdivy(1 - p, 1 - q) - xdivy(p, q)
    assert_all_modes(jxent.binary_entropy, (pj,), 0, d_h, rtol=1e-9)
    assert_all_modes(jxent.binary_cross_entropy, (pj, qj), 0, d_ce_p, rtol=1e-9)
    assert_all_modes(jxent.binary_cross_entropy, (pj, qj), 1, d_q, rtol=1e-9)
    assert_all_modes(jxent.binary_kl_divergence, (pj, qj), 0, d_kl_p, rtol=1e-9, atol=1e-12)
    assert_all_modes(jxent.binary_kl_divergence, (pj, qj), 1, d_q, rtol=1e-9)


def test_binary_derivatives_at_the_corners():
    corners_p = jnp.array([0.0, 1.0, 0.0, 1.0])
    corners_q = jnp.array([0.0, 1.0, 1.0, 0.0])
    # h'(p) = log((1 - p) / p)
    assert_all_modes(jxent.binary_entropy, (corners_p,), 0, [INF, -INF, INF, -INF])
    # dH/dq = (1 - p)/(1 - q) - p/q, with 0 where the numerator is 0.
    assert_all_modes(jxent.binary_cross_entropy, (corners_p, corners_q), 1, [1, -1, INF, -INF])
    assert_all_modes(jxent.binary_cross_entropy, (corners_p, corners_q), 0, [INF, -INF, -INF, INF])
    # KL at p = q ∈ {0, 1}: the same +inf convention as kl_divergence.
    assert_all_modes(jxent.binary_kl_divergence, (corners_p, corners_q), 0, [INF, -INF, -INF, INF])
    assert_all_modes(jxent.binary_kl_divergence, (corners_p, corners_q), 1, [1, -1, INF, -INF])


# --------------------------------------------------------------------------- no NaN at the edges

EDGES = [
    ("entropy", ([0.0, 1.0],)),
    ("entropy", ([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]],)),
    ("cross_entropy", ([1.0, 0.0], [1.0, 0.0])),
    ("cross_entropy", ([0.5, 0.5, 0.0], [0.5, 0.0, 0.5])),
    ("kl_divergence", ([0.0, 0.5, 0.5], [0.0, 0.25, 0.75])),
    ("kl_divergence", ([0.5, 0.5], [1.0, 0.0])),
    ("kl_divergence", ([1.0, 0.0, 0.0], [0.5, 0.5, 0.0])),
    ("js_divergence", ([0.0, 0.5, 0.5, 0.0], [0.0, 0.25, 0.0, 0.75])),
    ("js_divergence", ([1.0, 0.0], [0.0, 1.0])),
    ("entropy_from_logits", ([0.0, 1.0, -INF, 2.0],)),
    ("entropy_from_logits", ([[1e4, -1e4, 0.0], [-INF, -INF, -INF]],)),
    ("cross_entropy_from_logits", ([0.2, 0.0, 0.0, 0.8], [0.0, 1.0, -INF, 2.0])),
    ("cross_entropy_from_logits", ([1.0, 0.0, 0.0], [1e4, -1e4, -INF])),
    ("kl_divergence_from_logits", ([0.0, 1.0, -INF, 2.0], [1.0, 0.0, -INF, 3.0])),
    ("kl_divergence_from_logits", ([1e4, -1e4, -INF], [-1e4, 1e4, 0.0])),
    ("kl_divergence_from_logits", ([-INF, -INF], [-INF, -INF])),
    ("binary_entropy", ([0.0, 1.0, 1e-30, 0.5],)),
    ("binary_cross_entropy", ([0.0, 1.0, 0.0, 1.0, 0.5], [0.0, 1.0, 1.0, 0.0, 1e-30])),
    ("binary_kl_divergence", ([0.0, 1.0, 0.0, 1.0, 0.5], [0.0, 1.0, 1.0, 0.0, 1e-30])),
]


@pytest.mark.parametrize(
    ("name", "args"), EDGES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(EDGES)]
)
def test_no_nan_at_the_edges(name, args):
    fn = BY_NAME[name].fn
    args = tuple(jnp.asarray(a, jnp.float32) for a in args)
    assert_no_nan(all_derivatives(fn, args, with_hessian=True))  # the value too
