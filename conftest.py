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
    # Over 5 s each (or a grid that is), measured in the 2026-12-05 suite:
    "test_divergence_from_logits_second_derivatives_by_finite_differences",
    "test_generalized_js_of_logits_has_finite_gradients_at_zero_probabilities",
    "test_class_weights_match_float64_formula",
    "test_second_derivatives_by_finite_differences",
    "test_hessian_at_zero_probabilities_matches_differences_of_the_gradient",
    "test_hessians_are_never_nan_and_infinite_where_the_curvature_is",
    "test_fused_shard_reductions_and_token_mask_equal_the_single_device_loss",
    "test_alpha_one_beta_half_and_shannon_counterparts_agree",
    "test_vmap_over_rows_and_orders",
    "test_derivatives_at_tiny_probabilities",
    "test_values_and_student_gradients_match_dense_float64",
    "test_gradients_for_arbitrary_cotangents_match_dense_float64",
    "test_value_and_grad_memory_at_8192_tokens_d2048_v131072",
    "test_default_tiles_keep_the_memory_bounds_at_8192_tokens_d2048_v131072",
    "test_reduced_memory_stops_growing_with_tokens_once_a_tile_is_full",
    "test_python_block_runs_as_written",
    "test_intro_states_which_losses_are_reverse_mode_only",
    "test_16_bit_inputs_give_a_float32_loss_and_16_bit_gradients",
    "test_batch_and_sequence_axes_and_vmap_and_jit",
    "test_forward_mode_agrees_with_reverse_mode",
}


def pytest_collection_modifyitems(config, items):
    import pytest

    for item in items:
        if getattr(item, "originalname", item.name) in _SLOW:
            item.add_marker(pytest.mark.slow)
