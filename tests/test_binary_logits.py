"""The Bernoulli measures from logits: binary_entropy_from_logits,
binary_cross_entropy_from_logits and binary_kl_divergence_from_logits.

Values against float64 references derived independently (the definition with
softplus and expit, the Bregman form with log1p/expm1 and its cumulant series
for nearly equal logits), exact edges at ±inf logits, derivatives against
closed forms and ``check_grads`` in float64, every mode and transform, dtypes,
bad input and the validation mode.
"""

import decimal
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify
from jax.test_util import check_grads
from reference64 import assert_close, f64, mul0
from scipy import special

import jxent

INF, NAN = np.inf, np.nan

FUNCTIONS = {"entropy": jxent.binary_entropy_from_logits}
FUNCTIONS |= {"cross_entropy": jxent.binary_cross_entropy_from_logits}
FUNCTIONS |= {"kl_divergence": jxent.binary_kl_divergence_from_logits}
# Jitted once each (``base`` static): eager calls dispatch op by op, which is slow.
JITTED = {name: jax.jit(fn, static_argnames="base") for name, fn in FUNCTIONS.items()}
H, CE, KL = JITTED["entropy"], JITTED["cross_entropy"], JITTED["kl_divergence"]
EDGE_LOGITS = [-INF, -1e4, -80.0, -30.0, -1.0, -1e-3, 0.0, 1e-3, 1.0, 30.0, 80.0, 1e4, INF]


# --------------------------------------------------------------------------- float64 references


def softplus(x):
    return np.logaddexp(0.0, f64(x))


def ref_entropy(logits):
    z = f64(logits)
    return mul0(special.expit(z), softplus(-z)) + mul0(special.expit(-z), softplus(z))


def ref_cross_entropy(p, q_logits):
    p, m = np.broadcast_arrays(f64(p), f64(q_logits))
    return mul0(p, softplus(-m)) + mul0(1 - p, softplus(m))


def ref_kl(p_logits, q_logits):
    """softplus(b) - softplus(a) - σ(a)(b - a), from the side where σ(a) <= ½."""
    a, b = np.broadcast_arrays(f64(p_logits), f64(q_logits))
    flip = a > 0
    a, b = np.where(flip, -a, a), np.where(flip, -b, b)
    p, v = special.expit(a), special.expit(a) * special.expit(-a)
    with np.errstate(all="ignore"):
        d = b - a
        bregman = np.log1p(p * np.expm1(d)) - p * d
        # Cumulants of Bernoulli(p): no cancellation for nearly equal logits.
        series = v * d**2 / 2 + v * (1 - 2 * p) * d**3 / 6 + v * (1 - 6 * v) * d**4 / 24
        direct = mul0(p, softplus(-b) - softplus(-a)) + mul0(1 - p, softplus(b) - softplus(a))
    value = np.where(np.abs(d) < 1e-3, series, np.where(np.abs(d) <= 30, bregman, direct))
    # Q gives zero mass to an event P gives mass to, however little (it may underflow).
    value = np.where(np.isinf(b), INF, value)
    return np.where(a == b, 0.0, value)


def sigmoid_difference(a, b):
    """σ(b) - σ(a) = ½(tanh(b/2) - tanh(a/2)) = ½ sinh((b-a)/2) / (cosh(a/2) cosh(b/2))."""
    a, b = f64(a), f64(b)
    with np.errstate(over="ignore", invalid="ignore"):
        near = 0.5 * np.sinh((b - a) / 2) / (np.cosh(a / 2) * np.cosh(b / 2))
    # Far apart the plain difference does not cancel (and sinh, cosh overflow).
    return np.where(np.abs(b - a) <= 30, near, special.expit(b) - special.expit(a))


def logits32(rng, n=256):
    """Edges, and logits of every scale up to ±1e4, in float32."""
    scales = 10 ** rng.uniform(-3, 4, n)
    return np.concatenate([EDGE_LOGITS, rng.normal(size=n) * scales]).astype(np.float32)


# --------------------------------------------------------------------------- values


def _decimal_kl(a, b):
    """D(σ(a)‖σ(b)) with 60 significant digits (the standard library's decimal)."""
    a, b = decimal.Decimal(float(a)), decimal.Decimal(float(b))
    p, q = 1 / (1 + (-a).exp()), 1 / (1 + (-b).exp())
    return float(p * (p / q).ln() + (1 - p) * ((1 - p) / (1 - q)).ln())


def test_the_references_against_60_digits(rng):
    z = rng.normal(size=12) * 3
    w = rng.normal(size=12) * 3
    p = special.expit(z)
    naive_h = -(special.xlogy(p, p) + special.xlog1py(1 - p, -p))
    np.testing.assert_allclose(ref_entropy(z), naive_h, rtol=1e-12)
    naive_kl = special.rel_entr(p, special.expit(w)) + special.rel_entr(1 - p, special.expit(-w))
    np.testing.assert_allclose(ref_cross_entropy(p, w), naive_h + naive_kl, rtol=1e-12)
    # The three forms of ref_kl: the cumulant series (|b - a| < 1e-3), where
    # D ~ 1e-7 is far below its terms, the Bregman form and the direct one (> 30).
    a = np.concatenate([z, z, z, [-20.0, 25.0]])
    b = np.concatenate([z + 0.9e-3, z - 1e-6, w, [15.0, -12.0]])
    with decimal.localcontext(prec=60):
        expected = [_decimal_kl(x, y) for x, y in zip(a, b)]
    np.testing.assert_allclose(ref_kl(a, b), expected, rtol=1e-10)


def test_entropy_matches_float64_at_every_scale(rng):
    z = logits32(rng)
    got = H(z)
    chex.assert_type(got, jnp.float32)
    chex.assert_shape(got, z.shape)
    assert_close(got, ref_entropy(z), rtol=2e-6)


def test_entropy_keeps_relative_precision_at_large_logits():
    z = np.float32([20.0, 30.0, 50.0, 80.0])
    # (1 + l) e^{-l} to first order; binary_entropy(sigmoid(l)) is 0 there.
    assert_close(H(z), ref_entropy(z), rtol=2e-6)
    assert_close(H(-z), ref_entropy(z), rtol=2e-6)
    np.testing.assert_allclose(f64(H(np.float32(30.0))), 31 * np.exp(-30.0), rtol=2e-6)
    assert np.all(np.asarray(jxent.binary_entropy(jax.nn.sigmoid(z))) == 0)


def test_cross_entropy_matches_float64(rng):
    z = logits32(rng)
    p = np.concatenate(
        [[0.0, 1.0, 0.5, 1e-30], rng.uniform(0, 1, 64), special.expit(rng.normal(size=64) * 20)]
    ).astype(np.float32)
    got = CE(p[:, None], z[None, :])
    chex.assert_type(got, jnp.float32)
    chex.assert_shape(got, (len(p), len(z)))
    assert_close(got, ref_cross_entropy(p[:, None], z[None, :]), rtol=2e-6)


def test_kl_matches_float64_on_random_and_nearly_equal_logits(rng):
    z = logits32(rng, 128)
    w = logits32(rng, 128)
    assert_close(KL(z[:, None], w[None, :]), ref_kl(z[:, None], w[None, :]), rtol=1e-5)
    # Nearly equal pairs at every scale: the result is ~σσ'(b - a)²/2, far below
    # the size of either log-ratio.
    a = (rng.normal(size=256) * 10 ** rng.uniform(-2, 1.9, 256)).astype(np.float32)
    steps = np.float32(10.0) ** rng.integers(-6, 0, 256).astype(np.float32)
    b = np.concatenate([np.nextafter(a, np.float32(INF)), a * (1 + steps), a + steps])
    a = np.tile(a, 3)
    got = KL(a, b)
    assert np.all(np.asarray(got) >= 0)
    assert_close(got, ref_kl(a, b), rtol=1e-5)


def test_edges_are_exact():
    z = jnp.array([-INF, INF, -1e4, 1e4, NAN])
    np.testing.assert_array_equal(H(z), [0.0, 0.0, 0.0, 0.0, NAN])
    p = jnp.array([0.0, 1.0, 0.0, 1.0, 0.5, 0.5, 1.0, 0.0, NAN, 0.0, 1.5, -0.5])
    m = jnp.array([-INF, INF, INF, -INF, INF, -INF, 1e4, -1e4, 0.0, NAN, 0.0, 0.0])
    expected = [0.0, 0.0, INF, INF, INF, INF, 0.0, 0.0, NAN, NAN, NAN, NAN]
    np.testing.assert_array_equal(CE(p, m), expected)
    a = jnp.array([INF, -INF, INF, -INF, 3.0, INF, -INF, 0.0, 0.0, NAN, 0.0])
    b = jnp.array([INF, -INF, -INF, INF, 3.0, 0.0, 0.0, INF, -INF, 0.0, NAN])
    log2 = np.log(2.0)
    got = np.asarray(KL(a, b))
    np.testing.assert_array_equal(got[:5], [0.0, 0.0, INF, INF, 0.0])
    np.testing.assert_allclose(got[5:7], [log2, log2], rtol=1e-7)
    np.testing.assert_array_equal(got[7:], [INF, INF, NAN, NAN])


def test_identities_with_the_probability_measures_in_float64(rng):
    a = (rng.normal(size=128) * 4).astype(np.float32)
    b = (rng.normal(size=128) * 4).astype(np.float32)
    p, q = special.expit(f64(a)), special.expit(f64(b))

    @jax.jit
    def pairs(a, b, p, q):
        h, ce, kl = H(a), CE(p, b), KL(a, b)
        return [
            (ce, h + kl),  # H(p, q) = h(p) + D(p‖q), p = σ(a) given as a probability
            (h, jxent.binary_entropy(p)),
            (ce, jxent.binary_cross_entropy(p, q)),
            (kl, jxent.binary_kl_divergence(p, q)),
        ]

    with jax.enable_x64(True):
        for got, want in pairs(f64(a), f64(b), p, q):
            chex.assert_type(got, jnp.float64)
            np.testing.assert_allclose(got, want, rtol=1e-10)


def test_base():
    z = jnp.array([0.0, 1.0, -3.0])
    np.testing.assert_allclose(H(0.0, base=2), 1.0, rtol=1e-7)
    arguments = {"entropy": (z,), "cross_entropy": (0.3, z), "kl_divergence": (z, -z)}
    for base in (2, 10.0):
        for name, args in arguments.items():
            fn = JITTED[name]
            np.testing.assert_allclose(fn(*args, base=base), fn(*args) / np.log(base), rtol=1e-6)
    with pytest.raises(ValueError, match="base"):
        jax.eval_shape(lambda x: jxent.binary_entropy_from_logits(x, base=1), z)
    with pytest.raises(TypeError, match="base"):
        jax.eval_shape(lambda x: jxent.binary_kl_divergence_from_logits(x, x, base="2"), z)


# --------------------------------------------------------------------------- derivatives


@functools.cache
def modes(name, argnum):
    """d sum(fn) / d args[argnum], elementwise, jitted: reverse, forward (the
    Jacobian's diagonal) and jvp."""
    fn = FUNCTIONS[name]

    @jax.jit
    def run(*args):
        rev = jax.grad(lambda *a: jnp.sum(fn(*a)), argnum)(*args)
        fwd = jnp.diagonal(jax.jacfwd(fn, argnum)(*args))
        tangents = [jnp.zeros_like(a) for a in args]
        tangents[argnum] = jnp.ones_like(args[argnum])
        _, jvp = jax.jvp(fn, tuple(args), tuple(tangents))
        return {"rev": rev, "fwd": fwd, "jvp": jvp}

    return run


def test_derivatives_match_closed_forms(x64, rng):
    z = np.concatenate([rng.normal(size=24) * 5, [0.0, 20.0, -20.0, 40.0, -700.0, 700.0]])
    w = np.concatenate([rng.normal(size=24) * 5, [1e-9, 20.0 + 1e-6, -21.0, 0.0, -699.0, 1e4]])
    p = special.expit(rng.normal(size=30))
    zj, wj, pj = map(jnp.asarray, (z, w, p))
    v = special.expit(z) * special.expit(-z)
    expected = {
        ("entropy", 0): -z * v,
        ("cross_entropy", 0): -w,
        ("cross_entropy", 1): special.expit(w) - p,
        ("kl_divergence", 0): -v * (w - z),
        ("kl_divergence", 1): sigmoid_difference(z, w),
    }
    arguments = {"entropy": (zj,), "cross_entropy": (pj, wj), "kl_divergence": (zj, wj)}
    for (name, argnum), want in expected.items():
        for mode, got in modes(name, argnum)(*arguments[name]).items():
            # σ(b) - σ(a) for nearly equal large logits keeps its relative digits.
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-300, err_msg=f"{name} {mode}")


def test_second_derivatives_match_closed_forms(x64):
    z = jnp.array([0.0, 0.5, -2.0, 30.0, -30.0])
    p, v = special.expit(f64(z)), special.expit(f64(z)) * special.expit(-f64(z))
    # h'' = -v - l v (1 - 2p): -1/4 at l = 0 (a rule through |l| would give 0).
    hessian = jax.jit(jax.vmap(jax.hessian(jxent.binary_entropy_from_logits)))(z)
    np.testing.assert_allclose(hessian, -v - f64(z) * v * (1 - 2 * p), rtol=1e-9)
    b = jnp.array([1.0, 0.5, 3.0, 30.5, -31.0])
    blocks = jax.jit(jax.vmap(jax.hessian(jxent.binary_kl_divergence_from_logits, (0, 1))))(z, b)
    vb = special.expit(f64(b)) * special.expit(-f64(b))
    dv = v * (1 - 2 * p)  # σ''(a)
    np.testing.assert_allclose(blocks[0][0], v - dv * (f64(b) - f64(z)), rtol=1e-9)
    np.testing.assert_allclose(blocks[0][1], -v, rtol=1e-9)
    np.testing.assert_allclose(blocks[1][0], -v, rtol=1e-9)
    np.testing.assert_allclose(blocks[1][1], vb, rtol=1e-9)


@jax.jit
def _all_three(z, w, p):
    return jnp.concatenate([H(z), CE(p, w), KL(z, w)])


def test_check_grads_float64(x64, rng):
    # One function of all the arguments: one set of compilations for the three measures.
    z = jnp.asarray(np.concatenate([rng.normal(size=5) * 3, [0.0, 12.0, -15.0]]))
    w = jnp.asarray(np.concatenate([rng.normal(size=5) * 3, [0.5, 12.0 + 1e-3, -14.0]]))
    p = jnp.asarray(rng.uniform(0.1, 0.9, 8))
    check_grads(_all_three, (z, w, p), order=2, modes=("fwd", "rev"))


def test_derivatives_at_infinite_logits():
    z = jnp.array([-INF, INF, -1e4, 1e4])
    for got in modes("entropy", 0)(z).values():
        np.testing.assert_array_equal(got, np.zeros(4))
    hessian = jax.jit(jax.hessian(lambda x: jnp.sum(jxent.binary_entropy_from_logits(x))))(z)
    np.testing.assert_array_equal(hessian, np.zeros((4, 4)))
    # Cross-entropy: d/dp = -m (±inf), d/dm = σ(m) - p.
    p, m = jnp.array([0.0, 1.0, 0.5, 0.0]), jnp.array([-INF, INF, INF, 0.0])
    for argnum, want in [(0, [INF, -INF, -INF, 0.0]), (1, [0.0, 0.0, 0.5, 0.5])]:
        for mode, got in modes("cross_entropy", argnum)(p, m).items():
            np.testing.assert_array_equal(got, want, err_msg=mode)
    # KL: ∂a = -σ(a)σ(-a)(b - a), ∂b = σ(b) - σ(a); 0 between equal infinite logits.
    a, b = jnp.array([INF, -INF, INF, -INF, 0.0]), jnp.array([INF, -INF, 0.0, 0.0, 0.0])
    for argnum, want in [(0, [0.0, 0.0, 0.0, 0.0, 0.0]), (1, [0.0, 0.0, -0.5, 0.5, 0.0])]:
        for mode, got in modes("kl_divergence", argnum)(a, b).items():
            np.testing.assert_array_equal(got, want, err_msg=mode)


@functools.cache
def _transforms(name):
    fn = FUNCTIONS[name]

    def total(*a):
        return jnp.sum(fn(*a))

    @jax.jit
    def run(*args):
        argnums = tuple(range(len(args)))
        return {
            "vmap": jax.vmap(fn)(*args),
            "grad": jax.grad(total, argnums)(*args),
            "jacfwd": jax.jacfwd(total, argnums)(*args),
            "vmap_grad": jax.vmap(jax.grad(total, argnums))(*args),
            "hessian": jax.hessian(total, argnums)(*args),
            "jacfwd_jacrev": jax.jacfwd(jax.jacrev(total, argnums), argnums)(*args),
            "jacrev_jacfwd": jax.jacrev(jax.jacfwd(total, argnums), argnums)(*args),
        }

    return run


SAME_DERIVATIVES = {"jacfwd": "grad", "vmap_grad": "grad"}
SAME_DERIVATIVES |= {"jacfwd_jacrev": "hessian", "jacrev_jacfwd": "hessian"}


@pytest.mark.parametrize("edges", [False, True], ids=["random", "edges"])
@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_transforms_agree_and_are_never_nan(name, edges, rng):
    if edges:  # exactly, ±inf included
        z = jnp.array([-INF, INF, INF, -INF, 0.0, 1e4, -80.0, 0.0, 1.0])
        w = jnp.array([-INF, INF, -INF, INF, INF, 1e4, -80.0, 0.0, -INF])
        p = jnp.array([0.0, 1.0, 0.0, 1.0, 0.5, 1.0, 0.0, 0.0, 0.3])
    else:
        z, w = (jnp.asarray(rng.normal(size=(3, 4)) * 5, jnp.float32) for _ in range(2))
        p = jnp.asarray(rng.uniform(size=(3, 4)), jnp.float32)
    args = {"entropy": (z,), "cross_entropy": (p, w), "kl_divergence": (z, w)}[name]
    got = _transforms(name)(*args)
    for mode, leaf in got.items():
        assert not np.isnan(np.asarray(jax.tree_util.tree_leaves(leaf))).any(), mode
    close = functools.partial(chex.assert_trees_all_close, rtol=0 if edges else 1e-6, atol=0)
    close(got["vmap"], JITTED[name](*args))
    for mode, reference in SAME_DERIVATIVES.items():
        close(got[mode], got[reference])


# --------------------------------------------------------------------------- dtypes and input


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_16_bit_inputs_are_computed_in_float32(dtype, rng):
    z = jnp.asarray(rng.normal(size=8) * 5, dtype)
    w = jnp.asarray(rng.normal(size=8) * 5, dtype)
    p = jnp.asarray(rng.uniform(size=8), dtype)
    up = [x.astype(jnp.float32) for x in (z, w, p)]
    for got, want in [(H(z), H(up[0])), (CE(p, w), CE(up[2], up[1])), (KL(z, w), KL(*up[:2]))]:
        chex.assert_type(got, jnp.float32)
        chex.assert_trees_all_equal(got, want)
    grad = jax.jit(jax.grad(lambda x: jnp.sum(jxent.binary_entropy_from_logits(x))))(z)
    chex.assert_type(grad, dtype)


@pytest.mark.parametrize(
    ("name", "args", "error", "message"),
    [
        ("entropy", (jnp.arange(3),), TypeError, "logits must be a floating"),
        ("cross_entropy", (jnp.ones(3), jnp.arange(3)), TypeError, "q_logits must"),
        ("cross_entropy", (jnp.arange(3), jnp.ones(3)), TypeError, "p must"),
        ("kl_divergence", (jnp.arange(3), jnp.ones(3)), TypeError, "p_logits must"),
        ("kl_divergence", (jnp.ones(3), jnp.arange(3)), TypeError, "q_logits must"),
        ("cross_entropy", (jnp.ones(3), jnp.ones(4)), ValueError, r"p of shape \(3,\) and q_l"),
        ("kl_divergence", (jnp.ones((2, 3)), jnp.ones(2)), ValueError, r"p_logits of shape \(2, 3"),
    ],
)
def test_bad_input_names_the_argument(name, args, error, message):
    with pytest.raises(error, match=message):
        jax.eval_shape(FUNCTIONS[name], *args)


def test_broadcasting():
    chex.assert_trees_all_equal(KL(jnp.zeros((2, 1)), jnp.zeros(3)), jnp.zeros((2, 3)))
    got = jax.eval_shape(jxent.binary_cross_entropy_from_logits, 0.5, jnp.zeros((4, 2)))
    assert got.shape == (4, 2) and got.dtype == jnp.float32


CHECKED = {name: jax.jit(jxent.checked(fn)) for name, fn in FUNCTIONS.items()}


@pytest.mark.parametrize(
    ("name", "position", "bad", "message"),
    [
        ("entropy", 0, NAN, "logits contains NaN"),
        ("cross_entropy", 0, NAN, "p contains NaN"),
        ("cross_entropy", 0, 1.5, r"p has probabilities outside \[0, 1\]"),
        ("cross_entropy", 1, NAN, "q_logits contains NaN"),
        ("kl_divergence", 0, NAN, "p_logits contains NaN"),
        ("kl_divergence", 1, NAN, "q_logits contains NaN"),
    ],
)
def test_validation_mode_reports_bad_values(name, position, bad, message):
    good = {"entropy": [[-INF, 0.0, INF]], "cross_entropy": [[0.0, 0.5, 1.0], [-INF, 0.0, INF]]}
    good["kl_divergence"] = [[-INF, 0.0, INF], [INF, 0.0, -INF]]
    args = [jnp.asarray(a, jnp.float32) for a in good[name]]
    error, out = CHECKED[name](*args)
    assert error.get() is None  # ±inf logits are valid here
    args[position] = args[position].at[1].set(bad)
    error, out = CHECKED[name](*args)
    with pytest.raises(checkify.JaxRuntimeError, match=f"jxent: {message}"):
        error.throw()
    assert np.isnan(np.asarray(out)[1])
