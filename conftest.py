"""Give the test process 8 CPU devices, before anything imports JAX.

The vocab-parallel and partitioning tests need a mesh of 8; single-device tests
are unaffected. The suite runs on the CPU platform (set ``JAX_PLATFORMS`` to run
it elsewhere): on a host with one GPU the mesh tests would otherwise skip.
Hypothesis draws the same examples on every run (a CI failure reproduces).
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}".strip()

from hypothesis import settings  # noqa: E402

settings.register_profile("jxent", derandomize=True, database=None, deadline=None)
settings.load_profile("jxent")


# Tests over 5 s on 2 cores: CI's floor stage (the lowest pinned versions) leaves them to
# the newest stage, which runs everything.
_SLOW = {
    "test_check_grads_orders_one_and_two_float64",
    "test_gradient_with_one_operand_replicated",
    "test_check_grads_order_2_in_float64",
    "test_where_equals_slicing_out_the_masked_classes",
    "test_renyi_and_generalized_js_derivatives_at_the_edges_are_never_nan",
    "test_logits_shard_loss_and_gradient_equal_the_dense_loss",
    "test_gradients_against_finite_differences_in_float64",
    "test_repr_under_tracing_and_batching_shows_dtypes_and_shapes",
    "test_entropy_from_logits_second_derivatives_agree_in_every_order_of_modes",
    "test_one_large_update_sums_as_exactly_as_many_small_ones",
}


def pytest_collection_modifyitems(config, items):
    import pytest

    for item in items:
        if getattr(item, "originalname", item.name) in _SLOW:
            item.add_marker(pytest.mark.slow)
