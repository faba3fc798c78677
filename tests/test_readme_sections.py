"""README's "Large vocabularies" snippet runs and computes what the text says."""

import re
from pathlib import Path

import chex
import jax
import numpy as np

import jxent

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _section_code(title):
    section = README.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```python\n(.*?)^```", section, flags=re.M | re.S)[0]


def test_large_vocabulary_snippet_matches_the_dense_loss():
    namespace: dict = {}
    exec(_section_code("Large vocabularies"), namespace)
    hidden, weight, labels = namespace["hidden"], namespace["weight"], namespace["labels"]
    logits = 30.0 * jax.numpy.tanh(hidden @ weight / 30.0)
    losses = jxent.losses.softmax_cross_entropy_with_integer_labels(
        logits, labels, ignore_index=-100, z_loss=1e-4, label_smoothing=0.1
    )
    counted = labels != -100
    assert 0 < counted.sum() < counted.size
    dense = losses.sum() / counted.sum()
    np.testing.assert_allclose(namespace["loss"], dense, rtol=1e-5)
    chex.assert_shape(namespace["d_weight"], weight.shape)
    chex.assert_tree_all_finite((namespace["d_hidden"], namespace["d_weight"]))


def test_many_devices_snippet_uses_public_names_only():
    code = _section_code("Many devices")
    for name in re.findall(r"jxent\.([\w.]+)", code):
        obj = jxent
        for part in name.split("."):
            obj = getattr(obj, part)
        assert obj is not None
