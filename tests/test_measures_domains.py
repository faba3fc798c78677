"""Options outside their domain, empty batches, empty class axes and non-int axes."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify
from measure_cases import BY_NAME, CLASS_AXIS_NAMES, MEASURES, ids

import jxent

INF, NAN = np.inf, np.nan
P = jnp.array([[0.2, 0.8, 0.0], [0.5, 0.25, 0.25]])
Q = jnp.array([[0.6, 0.4, 0.0], [0.25, 0.5, 0.25]])
Z = jnp.log(P)

# (function, its arguments, the option's name, values outside the domain)
OPTIONS = [
    (jxent.renyi_entropy, (P,), "alpha", [-1.0, -1e-30, NAN, -INF]),
    (jxent.renyi_divergence, (P, Q), "alpha", [-0.5, NAN]),
    (jxent.renyi_entropy_from_logits, (Z,), "alpha", [-2.0, NAN]),
    (jxent.renyi_divergence_from_logits, (Z, Z), "alpha", [-1.0]),
    (jxent.generalized_js_divergence, (P, Q), "beta", [1.5, -0.1, 1 + 1e-6, NAN, INF]),
    (jxent.generalized_js_divergence_from_logits, (Z, Z), "beta", [2.0, -1.0]),
]


@pytest.mark.parametrize(("fn", "args", "name", "bad"), OPTIONS)
def test_concrete_option_outside_its_domain_raises_naming_it(fn, args, name, bad):
    for value in bad:
        with pytest.raises(ValueError, match=rf"^{name} must be"):
            fn(*args, value)
    # One bad entry in an array of per-row options is enough.
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        fn(*args, jnp.array([0.5, bad[0]]))
    # The edges of the domain are in it: no error while tracing with them concrete,
    # and finite values (under jit, as the traced test's, which shares its compilation).
    edges = jnp.array([0.0, INF] if name == "alpha" else [0.0, 1.0])
    jax.eval_shape(lambda: fn(*args, edges))
    chex.assert_tree_all_finite(jax.jit(fn)(*args, edges))


@pytest.mark.parametrize(("fn", "args", "name", "bad"), OPTIONS)
def test_traced_option_outside_its_domain_is_nan_and_fails_validation(fn, args, name, bad):
    options = jnp.array([0.5, bad[0]])
    value = jax.jit(fn)(*args, options)
    assert np.isfinite(value[0]) and np.isnan(value[1])
    error, out = jax.jit(jxent.checked(fn))(*args, options)
    with pytest.raises(checkify.JaxRuntimeError, match=rf"jxent: {name} must be"):
        error.throw()
    np.testing.assert_array_equal(np.asarray(out), np.asarray(value))
    error, _ = jax.jit(jxent.checked(fn))(*args, jnp.array([0.5, 0.25]))
    assert error.get() is None


def test_option_of_the_wrong_type_raises_type_error():
    with pytest.raises(TypeError, match="alpha"):
        jxent.renyi_entropy(P, "two")
    with pytest.raises(TypeError, match="beta"):
        jxent.generalized_js_divergence(P, Q, "half")


# --------------------------------------------------------------------------- shapes

# One case per public function (measure_cases.MEASURES).
CLASS_AXIS = [BY_NAME[name] for name in CLASS_AXIS_NAMES]


@pytest.mark.parametrize("case", MEASURES, ids=ids(MEASURES))
def test_empty_batches_give_empty_results(case):
    if case.kinds == "j":
        args, shape = (jnp.zeros((0, 3, 4)),), (0,)
    elif case.kinds in ("b", "bb"):
        args, shape = (jnp.zeros((0, 5)),) * len(case.kinds), (0, 5)
    else:
        args, shape = (jnp.zeros((0, 3)),) * len(case.kinds), (0,)
    argnums = tuple(range(len(args)))
    # In one jitted function: the value, the gradient and the validation mode.
    value, grads, (error, _) = jax.jit(
        lambda *a: (
            case(*a),
            jax.grad(lambda *b: case(*b).sum(), argnums)(*a),
            jxent.checked(case)(*a),
        )
    )(*args)
    chex.assert_shape(value, shape)
    chex.assert_shape(grads, [a.shape for a in args])
    assert error.get() is None
    # A batch of batches, one of them empty, and the classes on another axis.
    if case.name in CLASS_AXIS_NAMES:
        chex.assert_shape(case(*(jnp.zeros((2, 0, 3)),) * len(args)), (2, 0))
        chex.assert_shape(case(*(jnp.zeros((3, 0)),) * len(args), axis=0), (0,))


@pytest.mark.parametrize("case", CLASS_AXIS, ids=ids(CLASS_AXIS))
def test_an_empty_class_axis_raises_naming_the_argument(case):
    for shape, axis in [((4, 0), -1), ((0, 5), 0), ((2, 0, 5), (1, 2))]:
        with pytest.raises(ValueError, match=r"(probs|p|logits|q_logits|p_logits)\b.* no classes"):
            case(*(jnp.zeros(shape),) * len(case.kinds), axis=axis)


def test_an_empty_joint_table_raises_naming_it():
    for fn in (jxent.mutual_information, jxent.conditional_entropy):
        for shape in [(2, 0, 3), (2, 3, 0)]:
            with pytest.raises(ValueError, match=r"^joint of shape .* no classes along axes"):
                fn(jnp.zeros(shape))


@pytest.mark.parametrize("case", CLASS_AXIS, ids=ids(CLASS_AXIS))
def test_an_axis_that_is_not_an_int_raises_type_error_naming_it(case):
    args = (jnp.full((2, 3), 1 / 3),) * len(case.kinds)
    for axis in [1.0, "1", True, None, jnp.array(1), (0, 1.0), (True,)]:
        with pytest.raises(TypeError, match=r"^axis must be an int or a tuple of ints"):
            case(*args, axis=axis)
    chex.assert_shape(case(*args, axis=[1]), (2,))  # a list works like a tuple


def test_joint_axes_and_given_that_are_not_ints_raise_type_error_naming_them():
    joint = jnp.full((2, 3, 4), 1 / 12)
    with pytest.raises(TypeError, match=r"^axes must be an int or a tuple of ints"):
        jxent.mutual_information(joint, axes=1.0)
    with pytest.raises(TypeError, match=r"^axes must be an int or a tuple of ints"):
        jxent.conditional_entropy(joint, axes=(1, 2.0))
    with pytest.raises(TypeError, match=r"^given must be an int"):
        jxent.conditional_entropy(joint, given=1.0)
