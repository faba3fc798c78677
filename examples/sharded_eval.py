"""Evaluate a language-model head sharded along the vocabulary on 8 CPU devices.

Run: ``python examples/sharded_eval.py`` (it asks XLA for 8 host devices itself).
It shards a random ``[D, V]`` head along V over a ``("data", "vocab")`` mesh,
computes per-token losses with ``jxent.sharding.vocab_parallel_linear_cross_entropy``
inside ``shard_map`` (devices exchange only per-token vectors), accumulates them
in a ``jxent.metrics.LogLoss`` merged across the data axis, and prints loss and
perplexity next to the single-device ``jxent.losses.linear_cross_entropy``.
"""

import argparse
import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()

import jax
import jax.numpy as jnp
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import jxent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    mesh = jax.make_mesh((2, 4), ("data", "vocab"), axis_types=(AxisType.Auto,) * 2)
    keys = jax.random.split(jax.random.key(args.seed), 3)
    hidden = jax.random.normal(keys[0], (args.tokens, args.dim))
    weight = jax.random.normal(keys[1], (args.dim, args.vocab)) / args.dim**0.5
    labels = jax.random.randint(keys[2], (args.tokens,), 0, args.vocab)
    hidden = jax.device_put(hidden, NamedSharding(mesh, P("data")))
    weight = jax.device_put(weight, NamedSharding(mesh, P(None, "vocab")))
    labels = jax.device_put(labels, NamedSharding(mesh, P("data")))

    def evaluate_shard(h, w, y):
        losses = jxent.sharding.vocab_parallel_linear_cross_entropy(h, w, y, axis_name="vocab")
        # Every vocab shard holds the same losses; merge the data shards.
        return jxent.metrics.LogLoss.empty().update_from_losses(losses).psum("data")

    sharded = jax.jit(
        jax.shard_map(
            evaluate_shard,
            mesh=mesh,
            in_specs=(P("data"), P(None, "vocab"), P("data")),
            out_specs=P(),
        )
    )(hidden, weight, labels)
    single = jxent.metrics.LogLoss.empty().update_from_losses(
        jax.jit(jxent.losses.linear_cross_entropy)(hidden, weight, labels)
    )
    print(f"mesh {dict(mesh.shape)}, tokens {args.tokens}, D {args.dim}, V {args.vocab}")
    print(f"{'path':<14}{'tokens':>8}{'loss (nats)':>14}{'perplexity':>14}{'bits/token':>12}")
    for name, metric in (("sharded", sharded), ("single-device", single)):
        print(
            f"{name:<14}{int(metric.count):>8}{float(metric.mean()):>14.6f}"
            f"{float(metric.perplexity()):>14.3f}{float(metric.bits_per_token()):>12.5f}"
        )
    gap = abs(float(sharded.mean()) - float(single.mean())) / float(single.mean())
    print(f"relative difference: {gap:.2e}")
    assert gap < 1e-6, gap
    print("uniform over V would be", f"{float(jnp.log(args.vocab)):.6f}", "nats")


if __name__ == "__main__":
    main()
