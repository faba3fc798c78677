"""Hypothesis properties of the measures: identities, bounds, invariances,
and the meaning of ``where``, ``axis`` and ``base``. (The Jensen–Shannon bounds
are in test_jensen.py, Rényi's monotonicity in test_renyi.py.)

Hypothesis draws a seed and a few knobs; the arrays come from a seeded NumPy
generator, with exact zeros, ``-inf`` logits and logits up to ±1e4.
"""

import functools
import math

import jax
import jax.numpy as jnp
import measure_cases
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from measure_cases import BY_NAME

import jxent

INF = np.inf
NAN = np.nan

SETTINGS = settings(
    deadline=None,
    max_examples=30,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
seeds = st.integers(0, 2**32 - 1)
zero_fractions = st.sampled_from([0.0, 0.3, 0.8])
scales = st.sampled_from([1.0, 30.0, 1e4])

SHANNON = ["entropy", "cross_entropy", "kl_divergence", "js_divergence"]
SHANNON += ["entropy_from_logits", "cross_entropy_from_logits", "kl_divergence_from_logits"]
ALL = [*SHANNON, "binary_entropy", "binary_cross_entropy", "binary_kl_divergence"]


def random_inputs(seed, shape, **options):
    """measure_cases.random_inputs from a generator seeded with ``seed``."""
    return measure_cases.random_inputs(np.random.default_rng(seed), shape, **options)


@functools.cache
def jitted(name):
    """The measure under jit (one compilation per shape instead of one per op)."""
    return jax.jit(BY_NAME[name].fn, static_argnames=("axis", "base"))


def args_of(name, inputs):
    return measure_cases.select(BY_NAME[name].kinds, inputs)


def close(actual, desired, rtol=2e-6, atol=1e-6):
    np.testing.assert_allclose(
        np.asarray(actual, np.float64), np.asarray(desired, np.float64), rtol=rtol, atol=atol
    )


# --------------------------------------------------------------------------- identities, bounds


@SETTINGS
@given(seed=seeds, zeros=zero_fractions, nested=st.booleans(), scale=scales)
def test_cross_entropy_is_entropy_plus_kl(seed, zeros, nested, scale):
    inputs = random_inputs(seed, (4, 6), zeros=zeros, scale=scale, nested=nested)
    p, q, zp, zq = inputs["p"], inputs["q"], inputs["zp"], inputs["zq"]
    ce = jitted("cross_entropy")(p, q)
    close(ce, jitted("entropy")(p) + jitted("kl_divergence")(p, q), rtol=1e-5)
    assert not np.isnan(np.asarray(ce)).any()
    # The same identity through the logits of P and Q.
    p_of_z = jax.nn.softmax(zp)
    ce_z = jitted("cross_entropy_from_logits")(p_of_z, zq)
    h_z, kl_z = jitted("entropy_from_logits")(zp), jitted("kl_divergence_from_logits")(zp, zq)
    close(ce_z, h_z + kl_z, 1e-5, 1e-5)


ORDERS = jnp.asarray([0.0, 0.5, 1 - 1e-4, 1.0, 1 + 1e-4, 2.0, 50.0, INF], jnp.float32)
WEIGHTS = jnp.asarray([1e-6, 0.1, 0.5, 0.9, 1 - 2**-20], jnp.float32)


@jax.jit
def _divergences(p, q, zp, zq):
    """Every divergence of P and Q (and of their logits), flattened into one array."""
    over = lambda f, values, *args: jax.vmap(lambda v: f(*args, v))(values).ravel()  # noqa: E731
    b = jnp.clip(p, 0, 1)
    joint = p[:, :, None] * q[:, None, :] + jnp.float32(1e-3) * p[:, :, None] * p[:, None, :]
    return jnp.concatenate(
        [
            jxent.kl_divergence(p, q),
            jxent.js_divergence(p, q),
            jxent.kl_divergence_from_logits(zp, zq),
            jxent.binary_kl_divergence(b, jnp.clip(q, 0, 1)).ravel(),
            over(jxent.renyi_divergence, ORDERS, p, q),
            over(jxent.renyi_divergence_from_logits, ORDERS, zp, zq),
            over(jxent.generalized_js_divergence, WEIGHTS, p, q),
            over(jxent.generalized_js_divergence_from_logits, WEIGHTS, zp, zq),
            jxent.mutual_information(joint),
            jxent.conditional_entropy(joint),
        ]
    )


@SETTINGS
@given(
    seed=seeds,
    zeros=zero_fractions,
    mix=st.sampled_from([0.0, 1e-7, 1e-6, 1e-4, 1e-2, 0.5, 1.0]),
    mass=st.sampled_from([1.0, 0.3, 2.5]),
    shift=st.sampled_from([0.0, 1e-3, -7.0]),
)
def test_divergences_are_never_negative(seed, zeros, mix, mass, shift):
    inputs = random_inputs(seed, (4, 6), zeros=zeros, scale=1e4 if seed % 2 else 1.0)
    p, zp = inputs["p"], inputs["zp"]
    # Q moves from P (mix = 0) to an unrelated distribution (mix = 1); P may
    # be unnormalised, and Q's logits shifted by a constant.
    q = ((1 - mix) * p + mix * inputs["q"]).astype(np.float32)
    p = (p * np.float32(mass)).astype(np.float32)
    with np.errstate(invalid="ignore"):  # -inf * 0 in the entries replaced by -inf
        zq = np.where(np.isneginf(zp), -INF, (1 - mix) * zp + mix * inputs["zq"] + shift)
    values = np.asarray(_divergences(p, q, zp, zq.astype(np.float32)))
    assert not np.isnan(values).any()
    assert np.all(values >= 0), values.min()
    if mix == 0.0 and mass == 1.0:
        np.testing.assert_array_equal(np.asarray(jxent.kl_divergence(p, q)), 0.0)


# --------------------------------------------------------------------------- invariances


@SETTINGS
@given(
    seed=seeds,
    zeros=zero_fractions,
    scale=scales,
    shift=st.integers(-(2**21), 2**21),
    row_shifts=st.booleans(),
)
def test_from_logits_are_invariant_to_a_constant_shift(seed, zeros, scale, shift, row_shifts):
    # Logits on a 2**-8 grid and shifts of at most ~1e4 on the same grid:
    # z + c is exact in float32, so only the measure can break the invariance.
    quantum = 2.0**-8
    inputs = random_inputs(seed, (4, 6), zeros=zeros, scale=scale, quantum=quantum)
    rng = np.random.default_rng(seed)
    c = np.float32(shift * quantum * 2)
    if row_shifts:
        c = (rng.integers(-(2**21), 2**21, (4, 1)) * quantum * 2).astype(np.float32)
    zp, zq, p = inputs["zp"], inputs["zq"], inputs["p"]
    assert np.array_equal((zp + c) - c, zp)  # the shift really is exact
    close(jxent.entropy_from_logits(zp + c), jxent.entropy_from_logits(zp), 1e-6, 1e-7)
    close(jxent.cross_entropy_from_logits(p, zq + c), jxent.cross_entropy_from_logits(p, zq), 1e-6)
    c2 = np.float32(-2.0 * quantum * (shift // 3))
    close(
        jxent.kl_divergence_from_logits(zp + c, zq + c2),
        jxent.kl_divergence_from_logits(zp, zq),
        1e-6,
        1e-7,
    )


def masked_rows(seed, name, n):
    """Arguments of ``name`` for 3 rows, a per-row mask, and garbage where it is False."""
    rng = np.random.default_rng(seed + 1)
    inputs = random_inputs(seed, (3, n), zeros=0.3, scale=30.0 if seed % 2 else 1e4)
    where = rng.random((3, n)) < 0.6
    where[0] = True
    where[1, rng.integers(n)] = True
    where[2] = False  # an all-masked row: empty, value 0
    garbage = rng.choice(np.array([NAN, INF, -INF, -1.0, 2.0], np.float32), size=(3, n))
    args = [np.where(where, a, garbage).astype(np.float32) for a in args_of(name, inputs)]
    return args, where


@SETTINGS
@given(seed=seeds, name=st.sampled_from(SHANNON), n=st.sampled_from([5, 8]))
def test_where_equals_slicing_out_the_masked_classes(seed, name, n):
    fn = jitted(name)
    args, where = masked_rows(seed, name, n)
    got = np.asarray(fn(*args, where=jnp.asarray(where)))
    for row in range(2):
        # For probabilities the kept classes are not renormalised; for logits
        # the softmax runs over the kept classes only.
        expected = fn(*(a[row, where[row]] for a in args))
        close(got[row], expected, rtol=2e-6, atol=1e-7)
    assert got[2] == 0.0
    # A mask of one rank less, broadcast over the rows.
    row_mask = where[0] & (np.arange(n) != n - 1)
    got = np.asarray(fn(*(np.asarray(a[:2]) for a in args), where=jnp.asarray(row_mask)))
    close(got[0], fn(*(a[0, row_mask] for a in args)), rtol=2e-6, atol=1e-7)


AXES = [0, 1, -1, (0, 2), (2, 0), (-1, -2), (0, 1, 2)]


@SETTINGS
@given(seed=seeds, name=st.sampled_from(SHANNON), axis=st.sampled_from(AXES))
def test_axis_equals_moveaxis_and_reshape(seed, name, axis):
    fn = jitted(name)
    inputs = random_inputs(seed, (3, 4, 5), zeros=0.3, scale=30.0 if seed % 2 else 1e4)
    args = args_of(name, inputs)
    axes = (axis,) if isinstance(axis, int) else axis
    axes = tuple(a % 3 for a in axes)
    rest = [a for a in range(3) if a not in axes]
    # Move the class axes last (in increasing order) and flatten them.
    sorted_axes = sorted(axes)
    moved = [
        np.moveaxis(a, sorted_axes, range(3 - len(axes), 3)).reshape(
            [a.shape[r] for r in rest] + [-1]
        )
        for a in args
    ]
    got = fn(*args, axis=axis)
    assert got.shape == tuple(args[0].shape[r] for r in rest)
    close(got, fn(*moved), rtol=2e-6, atol=1e-6)


@SETTINGS
@given(
    seed=seeds,
    name=st.sampled_from(ALL),
    base=st.sampled_from([2, 2.0, 10, math.e, 0.5, 1e-3, 7.5]),
)
def test_base_divides_nats_by_log_base(seed, name, base):
    fn = BY_NAME[name].fn
    inputs = random_inputs(seed, (4, 6), zeros=0.3)
    args = measure_cases.select(BY_NAME[name].kinds.replace("b", "p"), inputs)
    nats = np.asarray(fn(*args), np.float64)
    close(fn(*args, base=base), nats / math.log(base), rtol=1e-6, atol=1e-7)
