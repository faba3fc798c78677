"""linear_distillation_loss against an independent float64 reference from the dense
logits (NumPy for values, JAX autodiff of the dense formula in float64 for the
student's gradients), jxent's distillation_loss for "kl", and its structure."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fused_cases import matmuls
from hlo_reading import collectives
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import jxent

distill = jxent.losses.linear_distillation_loss
TOKENS, D_S, D_T, VOCAB = 19, 6, 9, 70  # 70: no multiple of the block size
TILES = {"block_size": 16, "token_block_size": 8}
DIVERGENCES = ["kl", "reverse_kl", "js", "tv"]


def _problem(seed=0, tokens=TOKENS, d_s=D_S, d_t=D_T, vocab=VOCAB, scale=1.0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    draw = lambda *shape: jnp.asarray(scale * rng.normal(size=shape), dtype)  # noqa: E731
    labels = jnp.asarray(rng.integers(0, vocab, tokens))
    return draw(tokens, d_s), draw(d_s, vocab), draw(tokens, d_t), draw(d_t, vocab), labels


def _dense(xp, s_logits, t_logits, labels, divergence, beta, temperature, hard):
    """Per-token loss from dense logits, written once for NumPy and jax.numpy."""
    log_softmax = (
        (lambda z: z - special_logsumexp(z)[:, None])
        if xp is np
        else (lambda z: jax.nn.log_softmax(z, axis=1))
    )
    log_p, log_q = log_softmax(t_logits / temperature), log_softmax(s_logits / temperature)
    p, q = xp.exp(log_p), xp.exp(log_q)

    def xlogy(x, log_ratio):
        return xp.sum(xp.where(x > 0, x * xp.where(x > 0, log_ratio, 0), 0), axis=1)

    if divergence == "kl":
        value = xlogy(p, log_p - log_q)
    elif divergence == "reverse_kl":
        value = xlogy(q, log_q - log_p)
    elif divergence == "js":
        m = beta * p + (1 - beta) * q
        log_m = xp.log(xp.where(m > 0, m, 1))
        value = beta * xlogy(p, log_p - log_m) + (1 - beta) * xlogy(q, log_q - log_m)
    else:
        value = 0.5 * xp.sum(xp.abs(p - q), axis=1)
    hard_term = -log_softmax(s_logits)[xp.arange(len(labels)), labels]
    return temperature**2 * value + hard * hard_term


def special_logsumexp(z):
    from scipy import special

    return special.logsumexp(z, axis=1)


def _logits(hidden, weight, bias, xp=np):
    f64 = lambda x: xp.asarray(x, xp.float64)  # noqa: E731
    return f64(hidden) @ f64(weight) + (0 if bias is None else f64(bias))


OPTION_SETS = {
    "plain": {},
    "biases, T=0.5, hard": {"biases": True, "temperature": 0.5, "hard_label_weight": 0.3},
    "T=4, ignore_index, where": {"temperature": 4.0, "ignore": True, "where": True},
    "masked teacher classes": {"masked_teacher": True, "beta": 0.2},
    "logits of 1e3": {"scale": 30.0},
}


def _case(option_set, divergence, reduction):
    opts = dict(OPTION_SETS[option_set])
    s_h, s_w, t_h, t_w, labels = _problem(1, scale=opts.pop("scale", 1.0))
    s_b = t_b = None
    if opts.pop("biases", False):
        s_b, t_b = jnp.linspace(-1, 1, VOCAB), jnp.cos(jnp.arange(VOCAB, dtype=jnp.float32))
    if opts.pop("masked_teacher", False):
        t_b = jnp.zeros(VOCAB).at[jnp.array([3, 17, 40])].set(-jnp.inf)
    counted = np.ones(TOKENS, bool)
    kwargs = {"divergence": divergence, "reduction": reduction, **TILES}
    if opts.pop("ignore", False):
        labels = labels.at[::4].set(-100)
        kwargs["ignore_index"] = -100
        counted &= np.asarray(labels) != -100
    if opts.pop("where", False):
        where = jnp.arange(TOKENS) % 3 != 1
        kwargs["where"] = where
        counted &= np.asarray(where)
        # Masked tokens are never read.
        s_h = jnp.where(where[:, None], s_h, jnp.nan)
        t_h = jnp.where(where[:, None], t_h, jnp.nan)
    kwargs |= opts
    return (s_h, s_w, t_h, t_w, labels), (s_b, t_b), counted, kwargs


def _reference_loss(inputs, biases, counted, kwargs, xp=np):
    s_h, s_w, t_h, t_w, labels = inputs
    s_b, t_b = biases
    hard = kwargs.get("hard_label_weight", 0.0)
    safe_labels = xp.where(xp.asarray(counted), labels, 0)
    s_logits = _logits(xp.where(xp.asarray(counted)[:, None], s_h, 0), s_w, s_b, xp)
    t_logits = _logits(xp.where(xp.asarray(counted)[:, None], t_h, 0), t_w, t_b, xp)
    losses = _dense(
        xp, s_logits, t_logits, safe_labels, kwargs["divergence"], kwargs.get("beta", 0.5),
        kwargs.get("temperature", 1.0), hard,
    )  # fmt: skip
    losses = xp.where(xp.asarray(counted), losses, 0)
    if kwargs["reduction"] == "none":
        return losses
    total = losses.sum()
    return total / max(counted.sum(), 1) if kwargs["reduction"] == "mean" else total


CASES = [
    pytest.param(o, d, r, id=f"{o}-{d}-{r}")
    for o in OPTION_SETS
    for d in DIVERGENCES
    for r in (["none", "mean", "sum"] if o == "biases, T=0.5, hard" else ["none", "mean"])
]


@pytest.mark.parametrize(("option_set", "divergence", "reduction"), CASES)
def test_values_and_student_gradients_match_dense_float64(option_set, divergence, reduction):
    inputs, biases, counted, kwargs = _case(option_set, divergence, reduction)
    s_h, s_w, t_h, t_w, labels = inputs
    s_b, t_b = biases

    def fused(s_h, s_w, s_b):
        return distill(s_h, s_w, t_h, t_w, labels, student_bias=s_b, teacher_bias=t_b, **kwargs)

    value, pullback = jax.vjp(fused, s_h, s_w, s_b)
    want = _reference_loss(inputs, biases, counted, kwargs)
    np.testing.assert_allclose(value, want, rtol=1e-5, atol=1e-6)
    if divergence == "reverse_kl" and option_set == "masked teacher classes":
        assert np.isinf(want).any()  # Q > 0 where P = 0: +inf, no gradient to compare
        return
    cotangent = jnp.asarray(np.random.default_rng(2).normal(size=np.shape(value)), jnp.float32)
    got = pullback(cotangent)

    def dense(s_h, s_w, s_b):
        return _reference_loss((s_h, s_w, t_h, t_w, labels), (s_b, t_b), counted, kwargs, jnp)

    with jax.enable_x64(True):
        f64 = lambda x: None if x is None else jnp.asarray(x, jnp.float64)  # noqa: E731
        _, dense_pullback = jax.vjp(dense, f64(s_h), f64(s_w), f64(s_b))
        want_grads = dense_pullback(f64(cotangent))
        scaled = pullback(-3 * cotangent)
    for g, r, s in zip(got, want_grads, scaled, strict=True):
        if r is None:
            continue
        r = np.where(np.asarray(counted)[:, None], r, 0) if r.shape == s_h.shape else r
        chex.assert_tree_all_finite(g)
        if divergence == "tv":
            # sign(q - p) flips where p ≈ q within float32 rounding: the subgradient
            # jumps there, so compare as a whole.
            g, r = np.asarray(g, np.float64), np.asarray(r)
            assert np.linalg.norm(g - r) <= 1e-3 * np.linalg.norm(r) + 1e-30
        else:
            # Entries below float32's range (1e-47 at logits of 1e3) come back 0. At
            # logits of 1e3 a float32 logit is known to 6e-5 and the backward's tiles
            # (another matmul shape) may round it otherwise than the forward's: a
            # probability's exponent moves by that much.
            atol = 1e-5 * np.abs(r).max() + 1e-37
            if option_set == "logits of 1e3":
                logits = np.abs(_logits(s_h, s_w, s_b)).max() + np.abs(_logits(t_h, t_w, t_b)).max()
                atol = max(atol, 2.0**-24 * logits * np.abs(s_w).max())
            np.testing.assert_allclose(g, r, rtol=1e-5, atol=atol)
        # The outer cotangent scales the gradients.
        np.testing.assert_allclose(s, -3 * g, rtol=1e-5, atol=1e-6 * np.abs(g).max())


@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0])
def test_kl_equals_distillation_loss_on_the_dense_logits(temperature):
    s_h, s_w, t_h, t_w, _ = _problem(3)
    got = distill(s_h, s_w, t_h, t_w, temperature=temperature, **TILES)
    want = jxent.losses.distillation_loss(s_h @ s_w, t_h @ t_w, temperature=temperature)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_zero_probabilities_follow_the_library_rules(divergence):
    s_h, s_w, t_h, t_w, _ = _problem(4)
    # The student cannot reach class 5, which the teacher gives mass to.
    s_b = jnp.zeros(VOCAB).at[5].set(-jnp.inf)
    losses = distill(s_h, s_w, t_h, t_w, student_bias=s_b, divergence=divergence, **TILES)
    assert not np.isnan(losses).any()
    if divergence == "kl":
        np.testing.assert_array_equal(losses, np.inf)
    else:
        assert np.isfinite(losses).all()
    if divergence in ("js", "tv"):
        bound = np.log(2) if divergence == "js" else 1.0
        assert (np.asarray(losses) <= bound + 1e-6).all()
    # A token whose both heads see no class at all is empty: 0, gradient 0.
    empty = jnp.full(VOCAB, -jnp.inf)
    value, grad = jax.value_and_grad(
        lambda h: distill(h, s_w, t_h, t_w, student_bias=empty, divergence=divergence).sum()
    )(s_h)
    assert value == 0
    np.testing.assert_array_equal(grad, 0)


def test_teacher_gets_zero_cotangents_and_all_masked_tokens_give_zero():
    s_h, s_w, t_h, t_w, labels = _problem(5)
    where = jnp.zeros(TOKENS, bool)

    def loss(*args):
        return distill(*args, labels, where=where, hard_label_weight=1.0, reduction="mean")

    value, grads = jax.value_and_grad(loss, (0, 1, 2, 3))(s_h, s_w, t_h, t_w)
    assert value == 0
    for g in grads:
        np.testing.assert_array_equal(g, 0)
    grads = jax.grad(lambda *a: distill(*a, labels, divergence="js").sum(), (2, 3))(
        s_h, s_w, t_h, t_w
    )
    for g in grads:
        np.testing.assert_array_equal(g, 0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"divergence": "jsd"}, ValueError, "divergence"),
        ({"beta": 1.5}, ValueError, "beta"),
        ({"temperature": 0.0}, ValueError, "temperature"),
        ({"hard_label_weight": -1.0}, ValueError, "hard_label_weight"),
        ({"teacher_weight": jnp.zeros((D_T, VOCAB + 1))}, ValueError, "same vocabulary"),
        ({"teacher_hidden": jnp.zeros((TOKENS + 1, D_T))}, ValueError, "leading"),
        ({"labels": None, "hard_label_weight": 0.5}, ValueError, "needs labels"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, error, match):
    s_h, s_w, t_h, t_w, labels = _problem(6)
    args = {"teacher_hidden": t_h, "teacher_weight": t_w, "labels": labels} | kwargs
    with pytest.raises(error, match=match):
        distill(s_h, s_w, **args)


def test_16_bit_inputs_match_the_float64_loss_of_their_values():
    inputs = _problem(7, dtype=jnp.bfloat16)
    got = distill(*inputs, divergence="js", temperature=2.0, **TILES)
    chex.assert_type(got, jnp.float32)
    want = _reference_loss(
        inputs, (None, None), np.ones(TOKENS, bool),
        {"divergence": "js", "temperature": 2.0, "reduction": "none"},
    )  # fmt: skip
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_batch_axes_jit_and_vmap():
    s_h, s_w, t_h, t_w, labels = _problem(8, tokens=24)
    flat = distill(s_h, s_w, t_h, t_w, labels, divergence="tv", hard_label_weight=0.5)
    shaped = jax.jit(distill, static_argnames=("divergence",))(
        s_h.reshape(4, 6, -1), s_w, t_h.reshape(4, 6, -1), t_w, labels.reshape(4, 6),
        divergence="tv", hard_label_weight=0.5,
    )  # fmt: skip
    np.testing.assert_allclose(shaped, flat.reshape(4, 6), rtol=1e-6)
    mapped = jax.vmap(
        lambda a, b, y: distill(a, s_w, b, t_w, y, divergence="tv", hard_label_weight=0.5)
    )(s_h.reshape(4, 6, -1), t_h.reshape(4, 6, -1), labels.reshape(4, 6))
    np.testing.assert_allclose(mapped, flat.reshape(4, 6), rtol=1e-6)


@pytest.mark.parametrize(
    ("reduction", "bound"), [("mean", lambda t, s: t + 3 * s), ("none", lambda t, s: 2 * t + 4 * s)]
)
def test_matmul_flops_and_16_bit_operands_in_the_jaxpr(reduction, bound):
    tokens, d_s, d_t, vocab = 200, 32, 48, 1000
    inputs = _problem(9, tokens, d_s, d_t, vocab, dtype=jnp.bfloat16)

    def loss(s_h, s_w, t_h, t_w, labels):
        out = distill(s_h, s_w, t_h, t_w, labels, divergence="js", hard_label_weight=0.1,
                      reduction=reduction, block_size=128, token_block_size=64)  # fmt: skip
        return out.mean() if reduction == "none" else out

    counted = list(matmuls(jax.make_jaxpr(jax.value_and_grad(loss, (0, 1)))(*inputs).jaxpr))
    total = sum(flops for flops, _, _ in counted)
    assert total <= 2 * tokens * vocab * bound(d_t, d_s) * 1.05, total / (2 * tokens * vocab)
    for flops, lhs, rhs in counted:
        if flops >= 0.01 * total:
            assert lhs == rhs == jnp.bfloat16, (flops, lhs, rhs)


@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_value_and_grad_memory_at_8192_tokens_d2048_v131072(reduction):
    tokens, dim, vocab = 8192, 2048, 131072

    def loss(s_h, s_w, t_h, t_w):
        out = distill(s_h, s_w, t_h, t_w, divergence="js", reduction=reduction)
        return out.mean() if reduction == "none" else out

    specs = [jax.ShapeDtypeStruct(s, jnp.float32) for s in [(tokens, dim), (dim, vocab)] * 2]
    compiled = jax.jit(jax.value_and_grad(loss, (0, 1))).lower(*specs).compile()
    mib = compiled.memory_analysis().temp_size_in_bytes / 2**20
    assert mib <= (192 if reduction == "none" else 4 * dim * vocab / 2**20 + 768), mib


@functools.cache
def _mesh(mode):
    return jax.make_mesh((4, 2), ("data", "model"), axis_types=(getattr(AxisType, mode),) * 2)


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices (conftest.py)")
@pytest.mark.parametrize("mode", ["Auto", "Explicit"])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_sharded_over_tokens_and_vocabulary_equals_one_device(mode, reduction):
    inputs = _problem(10, tokens=256, d_s=8, d_t=12, vocab=384)
    s_b = jnp.linspace(-1.0, 1.0, 384)

    def loss(s_h, s_w, t_h, t_w, labels, s_b):
        out = distill(s_h, s_w, t_h, t_w, labels, student_bias=s_b, divergence="js",
                      hard_label_weight=0.2, reduction=reduction, block_size=96)  # fmt: skip
        return (out * jnp.cos(jnp.arange(out.size))).sum() if reduction == "none" else out

    value_and_grad = jax.value_and_grad(loss, (0, 1, 5))
    want = jax.jit(value_and_grad)(*inputs, s_b)
    mesh = _mesh(mode)
    specs = (P("data"), P("data", "model"), P("data"), P(None, "model"), P("data"), P("model"))
    with jax.set_mesh(mesh):
        placed = [
            jax.device_put(x, NamedSharding(mesh, s))
            for x, s in zip((*inputs, s_b), specs, strict=True)
        ]
        compiled = jax.jit(value_and_grad).lower(*placed).compile()
        got = compiled(*placed)
    chex.assert_trees_all_close(got, want, rtol=2e-5, atol=1e-6)
    for c in collectives(compiled.as_text()):
        if c.op in ("all-gather", "all-to-all"):
            assert not (c.has_dimension(256) or c.has_dimension(384)), c  # tokens, vocabulary
        if c.in_loop:
            assert not (c.has_dimension(384) or c.has_dimension(192)), c


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices (conftest.py)")
@pytest.mark.parametrize("check_vma", [True, False])
@pytest.mark.parametrize("divergence", ["reverse_kl", "tv"])
def test_vocab_parallel_variant_inside_shard_map_equals_one_device(divergence, check_vma):
    s_h, s_w, t_h, t_w, labels = _problem(11, tokens=16, vocab=96, scale=2.0)
    t_b = jnp.zeros(96).at[jnp.array([7, 50])].set(-jnp.inf)
    where = jnp.arange(16) % 5 != 2
    options = dict(divergence=divergence, temperature=2.0, hard_label_weight=0.3, where=where)

    def local(s_h, s_w):
        return distill(s_h, s_w, t_h, t_w, labels, teacher_bias=t_b, **options)

    def sharded(s_h, s_w, t_w, t_b):
        return jxent.sharding.vocab_parallel_linear_distillation_loss(
            s_h, s_w, t_h, t_w, labels, axis_name="vocab", teacher_bias=t_b, block_size=5,
            **options,
        )  # fmt: skip

    mesh = jax.make_mesh((8,), ("vocab",), axis_types=(AxisType.Auto,))
    run = jax.shard_map(
        sharded,
        mesh=mesh,
        in_specs=(P(), P(None, "vocab"), P(None, "vocab"), P("vocab")),
        out_specs=P(),
        check_vma=check_vma,
    )
    cotangent = jnp.cos(jnp.arange(16.0))
    got = jax.jit(jax.value_and_grad(lambda *a: (cotangent * run(*a)).sum(), (0, 1)))(
        s_h, s_w, t_w, t_b
    )
    want = jax.jit(jax.value_and_grad(lambda *a: (cotangent * local(*a)).sum(), (0, 1)))(s_h, s_w)
    chex.assert_trees_all_close(got, want, rtol=2e-5, atol=1e-6)
