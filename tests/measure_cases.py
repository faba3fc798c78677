"""The case table of the measure tests: one row per (measure, options), and how to draw
its arguments, edges included. Float64 references are in reference64.py.

A case names a public function of ``jxent``, the kinds of its array arguments ("p"
probabilities along the last axis, "z" logits, "b" elementwise probabilities, "j" a
joint table ``[..., X, Y]``), its option (Rényi's α, the generalised JS weight β),
its keywords (``base``, ``axis``, ``given``), its float32 tolerance against float64,
and which table-driven tests it takes part in: values (every case), ``check_grads``
(``grads``) and transforms (``transforms``).
"""

import dataclasses
import functools
from collections.abc import Callable

import jax
import numpy as np
import pytest
import reference64 as ref

import jxent

INF, NAN, ULP = ref.INF, ref.NAN, ref.ULP
ULP64 = 2.0**-53

# Which option each family takes (the third positional argument).
OPTION_NAMES = {"renyi": "alpha", "generalized_js": "beta"}
# The names of each function's array arguments, as its error messages spell them.
ARGUMENT_NAMES = {
    "p": ("probs",),
    "z": ("logits",),
    "pp": ("p", "q"),
    "pz": ("p", "q_logits"),
    "zz": ("p_logits", "q_logits"),
    "b": ("p",),
    "bb": ("p", "q"),
    "j": ("joint",),
}


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    kinds: str
    option: float | None = None
    keywords: tuple = ()  # ((keyword, value), ...): base, axis, given
    rtol: float = 2e-6
    # Absolute slack in units of the dtype's roundoff, from the float64 arguments (in
    # their canonical layout) and the option: a few ulps of the magnitude of the terms
    # the measure sums, where they cancel.
    ulps: Callable | float = 0.0
    grads: bool = False  # check_grads at an interior point, orders 1 and 2
    grads_order: int = 2  # 1: first order only (at the edge of the option's domain)
    # Cases of one family with the same option take check_grads together, as one
    # function of all their arguments (and of the option).
    family: str = ""
    d_option: bool = False  # check_grads differentiates the option too
    transforms: bool = False  # jit, vmap, scan, jacfwd, hessian against eager
    sizes: bool = False  # values at 2 and 2**17 classes too
    # The largest logits drawn (the edges' ±1e4 rows are clipped to it).
    logit_scale: float = 1e4
    # ((table-driven check, reason), ...): known library bugs, strict xfails.
    xfails: tuple = ()

    @property
    def fn(self):
        return getattr(jxent, self.name)

    @property
    def option_name(self):
        return next((v for k, v in OPTION_NAMES.items() if self.name.startswith(k)), None)

    @property
    def argument_names(self):
        return ARGUMENT_NAMES[self.kinds]

    @property
    def id(self):
        options = [] if self.option is None else [f"{self.option_name}={self.option:.10g}"]
        options += [f"{k}={v}" for k, v in self.keywords]
        return self.name + (f"[{','.join(options)}]" if options else "")

    @property
    def axis(self):
        return dict(self.keywords).get("axis", -1)

    def __call__(self, *arrays, option=None, **keywords):
        """The measure, eagerly, with this case's option (or ``option``) and keywords."""
        return self.fn(*arrays, *self._option(option), **dict(self.keywords), **keywords)

    def jit(self, *arrays, option=None):
        """The measure under jit; the option is traced (one compilation for every value)."""
        return self.jitted(*arrays, *self._option(option))

    @property
    def jitted(self):
        """The measure, jitted once per name and keywords: arrays, then the option."""
        return _jitted(self.name, self.keywords)

    def _option(self, option):
        option = self.option if option is None else option
        return () if option is None else (option,)

    def arrange(self, arrays):
        """The canonical arguments (classes last) laid out as the case's ``axis`` says."""
        if self.axis == -1 or self.kinds in ("b", "bb"):
            return tuple(arrays)
        return tuple(np.moveaxis(a, -1, self.axis) for a in arrays)

    def reference(self, *arrays, dtype=np.float32):
        """The float64 value on the canonical arguments, for inputs of ``dtype``."""
        option = self.option
        if option is not None and dtype == np.float32:
            option = ref.alpha32(option)
        keywords = dict(self.keywords)
        extra = {"given": keywords["given"]} if "given" in keywords else {}
        value = getattr(ref, self.name)(*arrays, *(() if option is None else (option,)), **extra)
        return ref.in_base(value, keywords.get("base"))

    def tolerance(self, arrays, dtype=np.float32):
        """(rtol, atol) against the float64 reference, for inputs of ``dtype``."""
        ulps = self.ulps(*map(ref.f64, arrays), self.option) if callable(self.ulps) else self.ulps
        base = dict(self.keywords).get("base")
        ulps = ref.in_base(np.asarray(ulps, np.float64), base)
        if dtype == np.float32:
            return self.rtol, ULP * ulps
        return 1e-12, ULP64 * np.maximum(ulps, 64.0)


@functools.cache
def _jitted(name, keywords):
    fn = getattr(jxent, name)
    return jax.jit(lambda *a: fn(*a, **dict(keywords)))


# --------------------------------------------------------------------------- tolerances


def _xlogy_scale(p, q):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num(np.abs(ref.mul0(p, ref.safe_log(q))).sum(-1), posinf=0.0)


def _entropy_ulps(p, _=None):
    return 4 * (1 + _xlogy_scale(p, p))


def _cross_entropy_ulps(p, q, _=None):
    return 4 * (1 + _xlogy_scale(p, q))


def _kl_ulps(p, q, _=None):
    # Σ p log(p/q) - p + q: each term cancels p against q, to a few ulps of p + q.
    return 4 * (p.sum(-1) + q.sum(-1)) + 4 * _xlogy_scale(p, p) + 4 * _xlogy_scale(p, q)


def _js_ulps(p, q, beta=None):
    beta = 0.5 if beta is None else beta
    return 3 * ref.gjs_scale(p, q, ref.alpha32(beta))


def _logits_ulps(*arrays):
    # Absolute 1e-6 near 0 (DESIGN), ~17 ulps of 1: log-softmax of logits up to 1e4.
    return 17.0


def _gjs_logits_ulps(zp, zq, beta):
    return 8 * ref.gjs_scale(ref.softmax(zp), ref.softmax(zq), ref.alpha32(beta)) + 17.0


def _mass_scale(p):
    s = p.sum(-1)
    return s * np.abs(np.log(np.where(s > 0, s, 1.0)))


def _renyi_entropy_ulps(p, alpha):
    # H_α = s H_α(P/s) - s log s with s = Σp: a difference when s > 1.
    return 1 + 16 * _mass_scale(p)


def _renyi_divergence_ulps(p, q, alpha):
    # 3 ulps of the terms' magnitude near 0 (D_0 of nearly equal supports is ~1e-5 and
    # only known to a few ulps of Q(supp P) ≈ 1), and of the masses where unnormalised.
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.nan_to_num(ref.term_scale(p, q), nan=0.0, posinf=0.0)
    return 3 * (1 + scale) + 16 * (_mass_scale(p) + np.abs(p.sum(-1) - q.sum(-1)))


def _renyi_entropy_logits_ulps(z, alpha):
    return 8.0


def _renyi_divergence_logits_ulps(zp, zq, alpha):
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = ref.term_scale(ref.softmax(zp), ref.softmax(zq))
    return 8 * (1 + np.nan_to_num(scale, nan=0.0, posinf=0.0))


def _joint_ulps(joint, _=None):
    # Terms of both signs where the table is unnormalised: a few ulps of their size.
    p = joint.reshape(*joint.shape[:-2], -1)
    return 4 * (1 + _xlogy_scale(p, p) + _mass_scale(p))


def _binary_kl_ulps(p, q, _=None):
    # The two terms cancel when p ≈ q: a few ulps of their size and of p (one rounding
    # of p / q).
    from scipy import special

    scale = np.abs(special.rel_entr(p, q)) + np.abs(special.rel_entr(1 - p, 1 - q))
    return 4.2 * (p + scale)


# --------------------------------------------------------------------------- the table

# Rényi orders: 0.75 and 1.25 are where the series form near α = 1 hands over to the
# log-sum-exp; 0.3, 1 ± 1e-5 and 5 are where check_grads runs.
NEAR_ONE = [1 - 1e-3, 1 - 1e-4, 1 - 1e-5, 1 - 1e-7, 1.0, 1 + 1e-7, 1 + 1e-5, 1 + 1e-4, 1 + 1e-3]
GRID = sorted([0.0, 0.5, 0.75, *NEAR_ONE, 1.25, 2.0, 5.0, 50.0, INF])
RENYI_GRADS = [0.0, 0.3, 0.5, 1 - 1e-5, 1.0, 1 + 1e-5, 2.0, 5.0]
RENYI_TRANSFORMS = [0.0, 1.0, 2.0, INF]
BETAS = [0.0, 1e-6, 0.1, 0.2, 0.25, 0.3, 0.5, 0.75, 0.9, 1 - 2.0**-20, 1.0]
BETA_GRADS = [0.2, 0.5, 0.9]


def _shannon():
    everything = {"grads": True, "transforms": True, "sizes": True}
    return [
        Case("entropy", "p", ulps=_entropy_ulps, **everything),
        Case("entropy", "p", keywords=(("base", 2),), ulps=_entropy_ulps),
        Case("entropy", "p", keywords=(("axis", 0),), ulps=_entropy_ulps),
        Case("cross_entropy", "pp", ulps=_cross_entropy_ulps, **everything),
        Case(
            "cross_entropy", "pp", keywords=(("axis", 0), ("base", 10.0)), ulps=_cross_entropy_ulps
        ),
        Case("kl_divergence", "pp", rtol=1e-5, ulps=_kl_ulps, **everything),
        Case("kl_divergence", "pp", rtol=1e-5, keywords=(("base", 2),), ulps=_kl_ulps),
        Case("js_divergence", "pp", rtol=1e-5, ulps=_js_ulps, **everything),
        Case("js_divergence", "pp", rtol=1e-5, keywords=(("base", 2),), ulps=_js_ulps),
        Case("entropy_from_logits", "z", ulps=_logits_ulps, **everything),
        Case("entropy_from_logits", "z", keywords=(("axis", 0),), ulps=_logits_ulps),
        Case("cross_entropy_from_logits", "pz", ulps=_logits_ulps, **everything),
        Case("kl_divergence_from_logits", "zz", rtol=1e-5, ulps=_logits_ulps, **everything),
        Case(
            "kl_divergence_from_logits", "zz", rtol=1e-5, keywords=(("base", 2),), ulps=_logits_ulps
        ),
    ]


def _binary():
    both = {"grads": True, "transforms": True}
    return [
        Case("binary_entropy", "b", **both),
        Case("binary_entropy", "b", keywords=(("base", 2),)),
        Case("binary_cross_entropy", "bb", **both),
        Case("binary_kl_divergence", "bb", rtol=1e-5, ulps=_binary_kl_ulps, **both),
    ]


# The one Rényi-from-logits case where ±1e4 cannot be held, α = 50: the tilted weights
# p^α q^(1-α) can all sit on one class whose log-probabilities are ~1e3 in size, where
# float32 holds z - logsumexp(z) only to ulp(1e3) ≈ 6e-5; D (≈ 1 on the ±1e3 "wide"
# edge row) moves by α/(α-1) times that error of log p plus that of log q: hundreds of
# ulps of 1, not the table's 8. No float32 log-softmax is nearer the float64 value;
# ±1e3 stays within.
_RENYI_LOGIT_SCALES = {("renyi_divergence_from_logits", 50.0): 1e3}


def _renyi():
    cases = []
    for name, kinds, ulps in [
        ("renyi_entropy", "p", _renyi_entropy_ulps),
        ("renyi_divergence", "pp", _renyi_divergence_ulps),
        ("renyi_entropy_from_logits", "z", _renyi_entropy_logits_ulps),
        ("renyi_divergence_from_logits", "zz", _renyi_divergence_logits_ulps),
    ]:
        logits = name.endswith("logits")
        orders = sorted(set(GRID) | (set() if logits else set(RENYI_GRADS)))
        for alpha in orders:
            scale = _RENYI_LOGIT_SCALES.get((name, alpha), 1e4)
            grads = alpha in ([0.5, 3.0] if logits else RENYI_GRADS)
            cases.append(
                Case(
                    name,
                    kinds,
                    alpha,
                    rtol=2e-6 if logits else 1e-6,
                    ulps=ulps,
                    grads=grads,
                    # At α = 0, the edge of α's domain, first order as before (the
                    # second is covered at every other order); from logits, first
                    # order (the second is the probability versions', through the
                    # same rules: a budget of time).
                    grads_order=1 if alpha == 0 or logits else 2,
                    d_option=grads and alpha > 0,
                    family="renyi_logits" if logits else "renyi",
                    # From logits: the values, check_grads and the probability
                    # versions' transforms cover them (a budget of time).
                    transforms=alpha in RENYI_TRANSFORMS and not logits,
                    sizes=alpha == 2.0,
                    logit_scale=scale,
                )
            )
        if logits:
            cases.append(
                Case(
                    name,
                    kinds,
                    3.0,
                    rtol=2e-6,
                    ulps=ulps,
                    grads=True,
                    grads_order=1,
                    d_option=True,
                    logit_scale=1e4,
                    family="renyi_logits",
                )
            )
    cases.append(
        Case("renyi_divergence", "pp", 0.5, keywords=(("base", 2),), ulps=_renyi_divergence_ulps)
    )
    cases.append(Case("renyi_entropy", "p", 2.0, keywords=(("axis", 0),), ulps=_renyi_entropy_ulps))
    return cases


def _jensen():
    cases = [
        Case(
            "generalized_js_divergence",
            "pp",
            beta,
            rtol=1e-6,
            ulps=_js_ulps,
            grads=beta in BETA_GRADS,
            d_option=beta in BETA_GRADS,
            family="jensen",
            transforms=beta in (0.0, 0.3, 1.0),
            sizes=beta == 0.25,
        )
        for beta in BETAS
    ]
    cases.append(
        Case("generalized_js_divergence", "pp", 0.3, keywords=(("base", 2),), ulps=_js_ulps)
    )
    for beta in sorted({0.0, 0.3, 1.0, *BETA_GRADS}):
        cases.append(
            Case(
                "generalized_js_divergence_from_logits",
                "zz",
                beta,
                ulps=_gjs_logits_ulps,
                grads=beta in BETA_GRADS,
                d_option=beta in BETA_GRADS,
                family="jensen",
                transforms=beta == 0.3,
                sizes=beta == 0.3,
            )
        )
    return cases


def _joint():
    return [
        Case(
            "mutual_information",
            "j",
            rtol=1e-6,
            ulps=_joint_ulps,
            grads=True,
            grads_order=1,  # first order, as before (a budget of time)
            family="joint",
            transforms=True,
        ),
        Case("mutual_information", "j", rtol=1e-6, keywords=(("base", 2),), ulps=_joint_ulps),
        Case(
            "conditional_entropy",
            "j",
            rtol=1e-6,
            ulps=_joint_ulps,
            grads=True,
            grads_order=1,  # first order, as before (a budget of time)
            family="joint",
            transforms=True,
        ),
        Case(
            "conditional_entropy",
            "j",
            rtol=1e-6,
            keywords=(("given", -2),),
            ulps=_joint_ulps,
            grads=True,
            grads_order=1,  # first order, as before (a budget of time)
            family="joint",
        ),
    ]


def _in_bits_along_axis_0(cases):
    """Every public measure once more in bits, along axis 0 where it has a class axis:
    a measure that ignored ``base`` or ``axis`` fails its values."""
    typical = {"renyi_entropy": 2.0, "renyi_divergence": 0.5, "renyi_entropy_from_logits": 0.5}
    typical |= {"renyi_divergence_from_logits": 3.0}
    typical |= {"generalized_js_divergence": 0.3, "generalized_js_divergence_from_logits": 0.3}
    extra, seen = [], set()
    for case in cases:
        if case.name in seen or case.keywords or case.option != typical.get(case.name):
            continue
        seen.add(case.name)
        elementwise = case.kinds in ("b", "bb", "j")
        keywords = (("base", 2.0),) if elementwise else (("axis", 0), ("base", 2.0))
        extra.append(
            dataclasses.replace(
                case,
                keywords=keywords,
                grads=False,
                d_option=False,
                transforms=False,
                sizes=False,
                xfails=(),
            )
        )
    return extra


CASES = _shannon() + _binary() + _renyi() + _jensen() + _joint()
CASES += _in_bits_along_axis_0(CASES)

# One case per public function, with a typical option, for the checks that do not
# depend on it (dtypes, bad input, validation, shapes).
TYPICAL_OPTIONS = {
    "renyi_entropy": 2.0,
    "renyi_divergence": 0.5,
    "renyi_entropy_from_logits": 0.5,
    "renyi_divergence_from_logits": 3.0,
    "generalized_js_divergence": 0.3,
    "generalized_js_divergence_from_logits": 0.3,
}
MEASURES = [
    next(c for c in CASES if c.name == name and c.option == option and not c.keywords)
    for name, option in {
        **{case.name: None for case in CASES},
        **TYPICAL_OPTIONS,
    }.items()
]
BY_NAME = {case.name: case for case in MEASURES}
SHANNON_NAMES = [c.name for c in _shannon() if not c.keywords]
BINARY_NAMES = [c.name for c in MEASURES if c.kinds in ("b", "bb")]
JOINT_NAMES = [c.name for c in MEASURES if c.kinds == "j"]
# Functions whose classes lie along one ``axis`` (not binary, not joint).
CLASS_AXIS_NAMES = [c.name for c in MEASURES if c.kinds in ("p", "z", "pp", "pz", "zz")]


def ids(cases):
    return [case.id for case in cases]


def params(cases, check):
    """``cases`` as pytest parameters of the table-driven test ``check`` ("values",
    "grads", "transforms"), each known library bug a strict xfail."""
    return [
        pytest.param(
            case,
            id=case.id,
            marks=[pytest.mark.xfail(strict=True, reason=r) for c, r in case.xfails if c == check],
        )
        for case in cases
    ]


# --------------------------------------------------------------------------- inputs


def random_inputs(
    rng, shape, *, zeros=0.3, scale=30.0, alpha=1.0, nested=True, quantum=None, logits=True
):
    """Float32 P, Q (probabilities) and logits zp, zq with exact zeros / -inf.

    With ``nested`` Q's zeros are a subset of P's (so every measure is finite);
    otherwise they are independent. One class per row is never zeroed.
    Probabilities are renormalised after zeroing; ``alpha`` is the Dirichlet
    concentration; ``quantum`` rounds the logits to a multiple of it.
    """
    n = shape[-1]
    kept = rng.integers(n, size=shape[:-1])[..., None] == np.arange(n)
    absent_q = (rng.random(shape) < zeros) & ~kept
    absent_p = (rng.random(shape) < zeros) & ~kept
    if nested:
        absent_p |= absent_q

    def probs(absent):
        x = rng.dirichlet(np.full(n, alpha), size=shape[:-1])
        x = np.where(absent, 0.0, np.maximum(x, 1e-30))  # no float32 underflow
        return (x / x.sum(-1, keepdims=True)).astype(np.float32)

    def logit(absent):
        z = rng.uniform(-1.0, 1.0, shape) * scale
        if quantum is not None:
            z = np.round(z / quantum) * quantum
        return np.where(absent, -INF, z).astype(np.float32)

    inputs = {"p": probs(absent_p), "q": probs(absent_q)}
    if logits:
        inputs |= {"zp": logit(absent_p), "zq": logit(absent_q)}
    return inputs


# Which of random_inputs' arrays each kind of arguments takes.
INPUT_KEYS = {"p": ("p",), "pp": ("p", "q"), "z": ("zp",), "pz": ("p", "zq"), "zz": ("zp", "zq")}


def select(kinds, inputs):
    return tuple(inputs[k] for k in INPUT_KEYS[kinds])


def edge_inputs(rng, n=7):
    """Rows of P, Q, zp, zq at the edges (row by row, the same situation in each)."""
    assert n >= 4
    eye = np.eye(n)
    uniform = np.full(n, 1 / n)
    half = np.where(np.arange(n) < 2, 0.5, 0.0)
    spread = np.where(np.arange(n) < 2, 0.25, 0.5 / (n - 2))  # mass off P's support
    full = rng.dirichlet(np.ones(n))
    tiny = np.where(np.arange(n) < n - 1, 1e-30, 0.0)
    tiny[-1] = 1 - tiny.sum()
    p = [eye[0], uniform, half, eye[0], half, 2.5 * full, 0.3 * rng.dirichlet(np.ones(n)), tiny]
    q = [full, uniform, spread, eye[0], eye[0], 0.3 * rng.dirichlet(np.ones(n)), 2.5 * full, full]
    minus_inf = np.where(eye[0] > 0, 0.0, -INF)
    two = np.where(half > 0, 0.0, -INF)
    signs = rng.choice([-1.0, 1.0], n)
    huge = 1e4 * signs
    wide = np.where(np.arange(n) == 2, -INF, rng.normal(size=n) * 1e3)
    zp = [minus_inf, np.zeros(n), two, minus_inf, two, huge, -huge, wide]
    zq = [
        rng.normal(size=n) * 3,  # one-hot softmax P
        np.full(n, 5.0),  # identical uniform, shifted
        np.zeros(n),  # Q has mass off P's support
        minus_inf + 3.0,  # identical one-hot
        np.where(np.arange(n) == 1, -INF, 0.0),  # Q misses part of P's support
        huge,  # huge logits, identical
        1e4 * rng.uniform(-1, 1, n),  # huge logits, different
        np.where(np.arange(n) == 2, -INF, rng.normal(size=n) * 1e3),  # wide, same support
    ]
    as32 = lambda rows: np.stack(rows).astype(np.float32)  # noqa: E731
    return {"p": as32(p), "q": as32(q), "zp": as32(zp), "zq": as32(zq)}


def binary_inputs(rng, size):
    """Elementwise P, Q in [0, 1]: the edges (0, 1, tiny, 1 - tiny), then ``2 size`` draws."""
    edges = [0.0, 1.0, 1e-5, 1e-7, 1 - 1e-5, 0.5, 0.25, 1e-5]
    p = np.concatenate([edges, rng.random(size), 10 ** rng.uniform(-7, -1, size)])
    edges_q = [1e-5, 1 - 1e-5, 2e-5, 1e-5, 0.5, 1e-5, 0.75, 0.5]
    q = np.concatenate([edges_q, rng.random(size), 10 ** rng.uniform(-7, -1, size)])
    return p.astype(np.float32), np.clip(q, 1e-7, 1 - 1e-7).astype(np.float32)


def joint_tables(rng, shape, zeros=0.3, concentration=1.0):
    """Float32 tables ``[..., X, Y]`` summing to 1, with ~``zeros`` exact zeros."""
    flat_shape = (*shape[:-2], shape[-2] * shape[-1])
    x = rng.dirichlet(np.full(flat_shape[-1], concentration), size=flat_shape[:-1])
    x = np.where(rng.random(flat_shape) < zeros, 0.0, np.maximum(x, 1e-30))
    x[..., 0] = np.maximum(x[..., 0], 1e-3)
    return (x / x.sum(-1, keepdims=True)).astype(np.float32).reshape(shape)


def joint_edges(rng, nx=3, ny=4):
    """Tables at the edges: independent, deterministic, one cell, uniform, unnormalised."""
    px, py = rng.dirichlet(np.ones(nx)), rng.dirichlet(np.ones(ny))
    deterministic = np.zeros((nx, ny))
    deterministic[np.arange(nx), rng.permutation(ny)[:nx]] = px
    one_cell = np.zeros((nx, ny))
    one_cell[1, 2] = 1.0
    tables = [
        np.outer(px, py),
        deterministic,
        one_cell,
        np.full((nx, ny), 1 / (nx * ny)),
        3.5 * rng.dirichlet(np.ones(nx * ny)).reshape(nx, ny),
        0.3 * rng.dirichlet(np.ones(nx * ny)).reshape(nx, ny),
    ]
    return np.stack(tables).astype(np.float32)


def draw(case, rng, n=7):
    """The case's canonical float32 arguments: the edge rows, then random rows (a third
    of them with logits up to ±1e4 and a Dirichlet concentration of 0.2)."""
    if case.kinds in ("b", "bb"):
        p, q = binary_inputs(rng, 12)
        return (p.reshape(4, 8), q.reshape(4, 8))[: len(case.kinds)]
    if case.kinds == "j":
        tables = [joint_tables(rng, (12, 3, 4)), joint_tables(rng, (6, 3, 4), 0.0, 0.1)]
        masses = rng.uniform(0.2, 3.0, (6, 1, 1)).astype(np.float32)
        tables.append(joint_tables(rng, (6, 3, 4)) * masses)  # unnormalised
        return (np.concatenate([joint_edges(rng), *tables]),)
    parts = [edge_inputs(rng, n), random_inputs(rng, (8, n)), random_inputs(rng, (8, n), zeros=0.5)]
    parts.append(random_inputs(rng, (8, n), scale=1e4, alpha=0.2))
    # Unnormalised rows, summing to between 0.2 and 3 (used as given: never renormalised).
    unnormalised = random_inputs(rng, (8, n))
    for key in ("p", "q"):
        unnormalised[key] = unnormalised[key] * rng.uniform(0.2, 3.0, (8, 1)).astype(np.float32)
    return _rescaled(case, [*parts, unnormalised])


def _rescaled(case, parts):
    """The case's arrays from each part, concatenated; logits scaled to ``logit_scale``."""
    arrays = []
    for i, kind in enumerate(case.kinds):
        x = np.concatenate([select(case.kinds, part)[i] for part in parts])
        if kind == "z":
            x = np.where(np.isfinite(x), np.clip(x, -case.logit_scale, case.logit_scale), x)
        arrays.append(x)
    return tuple(arrays)


def draw_sizes(case, rng, n):
    """Random rows only (concentrations 1 and 0.2, logits up to 1, 30 and 1e4) of ``n`` classes."""
    batch = 2 if n > 10_000 else 8
    settings = [(1.0, 1.0), (1.0, 30.0), (0.2, 1e4)]
    parts = [random_inputs(rng, (batch, n), alpha=a, scale=s) for a, s in settings]
    return _rescaled(case, parts)


def interior(case, rng, shape=(2, 4)):
    """A float64 point well inside the domain, for finite differences: probabilities
    >= ~0.05 (off the simplex: the measures are defined and smooth there), logits of
    order 1, binary probabilities in [0.1, 0.9], joint tables with every cell >= ~0.02."""
    arrays = []
    for kind in case.kinds:
        if kind == "p":
            x = 0.05 + rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])
            arrays.append(x / x.sum(-1, keepdims=True))
        elif kind == "z":
            arrays.append(rng.normal(size=shape) * 2)
        elif kind == "b":
            arrays.append(rng.uniform(0.1, 0.9, shape))
        else:
            x = 0.05 + rng.dirichlet(np.ones(12), size=shape[:-1])
            arrays.append((x / x.sum(-1, keepdims=True)).reshape(*shape[:-1], 3, 4))
    return arrays


# --------------------------------------------------------------------------- derivatives

_LAST = {}  # the derivatives of the latest (fn, args)


def all_derivatives(fn, args, with_hessian=False):
    """The value of ``fn``; grad, jacfwd, jacrev (for every argument), and the hessian if
    asked, of the summed ``fn``.

    All in one jitted function: one compilation instead of one per operation and per
    transform (jit versus eager is checked in test_measures_api.py).
    """
    key = (fn, tuple((a.dtype.str, a.shape, a.tobytes()) for a in map(np.asarray, args)))
    if _LAST.get("key") != key or (with_hessian and "hessian" not in _LAST["value"]):
        summed = lambda *a: jax.numpy.sum(fn(*a))  # noqa: E731
        argnums = tuple(range(len(args)))

        def compute(*a):
            value = {
                "value": fn(*a),
                "grad": jax.grad(summed, argnums)(*a),
                "jacfwd": jax.jacfwd(summed, argnums)(*a),
                "jacrev": jax.jacrev(summed, argnums)(*a),
            }
            if with_hessian:
                value["hessian"] = jax.hessian(summed, argnums)(*a)
            return value

        _LAST.update(key=key, value=jax.jit(compute)(*args))
    return _LAST["value"]


def derivatives(fn, args, argnum):
    """The gradient with respect to ``args[argnum]`` by grad, jacfwd and jacrev."""
    value = all_derivatives(fn, args)
    return {mode: value[mode][argnum] for mode in ("grad", "jacfwd", "jacrev")}


def assert_all_modes(fn, args, argnum, expected, rtol=1e-6, atol=0.0):
    expected = ref.f64(expected)
    for mode, got in derivatives(fn, args, argnum).items():
        try:
            np.testing.assert_allclose(ref.f64(got), expected, rtol=rtol, atol=atol)
        except AssertionError as error:
            raise AssertionError(f"{mode} wrt argument {argnum}: {error}") from None


def hessian_blocks(fn, args):
    return all_derivatives(fn, args, with_hessian=True)["hessian"]


def assert_no_nan(tree):
    for leaf in jax.tree_util.tree_leaves(tree):
        assert not np.isnan(np.asarray(leaf)).any(), leaf


def pairs_with_edges(rng, n=9):
    """p, q with every combination of zeros: (0, 0), (0, >0), (>0, 0), (>0, >0)."""
    p = rng.uniform(0.05, 0.5, n)
    q = rng.uniform(0.05, 0.5, n)
    p[:4] = [0.0, 0.0, 0.3, 0.2]
    q[:4] = [0.0, 0.25, 0.0, 0.1]
    return p, q
