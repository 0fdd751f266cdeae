"""core.dropout_masks and the backends' Dropout layers that use it on the CPU."""
import math

import numpy as np
import pytest

from core.dropout_masks import CHUNK, MaskStream
from tests.model_configs import layers_module, to_numpy, to_tensor


# ---------------------------------------------------------------------------------------------- core mask stream
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_rate_is_one_minus_p_within_binomial_noise(p):
    n = 400_000
    kept = MaskStream(seed=3).keep_mask((n,), p).mean()
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(kept - (1 - p)) < 5 * sigma


def test_p_zero_keeps_everything_and_a_bad_p_is_named():
    assert MaskStream(1).keep_mask((1000,), 0.0).all()
    with pytest.raises(ValueError, match="dropout probability"):
        MaskStream(1).keep_mask((10,), 1.0)


def test_elements_are_independent_of_their_neighbours():
    """P(keep | previous kept) = P(keep): no correlation between consecutive draws (nor at chunk seams)."""
    mask = MaskStream(seed=5).keep_mask((3 * CHUNK,), 0.5)
    both = np.mean(mask[1:] & mask[:-1])
    assert abs(both - 0.25) < 5 * math.sqrt(0.25 * 0.75 / mask.size)


def test_a_seed_fixes_the_sequence_and_masks_differ_within_it():
    a, b = MaskStream(seed=7), MaskStream(seed=7)
    first = [a.keep_mask((64, 33), 0.3) for _ in range(3)]
    again = [b.keep_mask((64, 33), 0.3) for _ in range(3)]
    for x, y in zip(first, again):
        np.testing.assert_array_equal(x, y)
    assert (first[0] != first[1]).mean() > 0.2
    assert (MaskStream(seed=8).keep_mask((64, 33), 0.3) != first[0]).mean() > 0.2
    a.reset(7)
    np.testing.assert_array_equal(a.keep_mask((64, 33), 0.3), first[0])


def test_the_kth_mask_depends_on_its_number_not_on_the_earlier_masks():
    a, b = MaskStream(seed=2), MaskStream(seed=2)
    a.keep_mask((5,), 0.5)
    a.keep_mask((1000, 7), 0.2)
    b.keep_mask((300,), 0.9)
    b.keep_mask((2,), 0.1)
    np.testing.assert_array_equal(a.keep_mask((40, 40), 0.5), b.keep_mask((40, 40), 0.5))


def test_a_longer_mask_extends_a_shorter_one_chunk_by_chunk():
    """Chunk j of mask k is drawn from (seed, k, j) alone: the first CHUNK elements do not depend on the length."""
    short = MaskStream(seed=4).keep_mask((CHUNK,), 0.4)
    long = MaskStream(seed=4).keep_mask((CHUNK + 1000,), 0.4)
    np.testing.assert_array_equal(long[:CHUNK], short)


def test_scaled_mask_is_the_bool_mask_times_the_scale():
    keep = MaskStream(seed=9).keep_mask((50, 70), 0.25)
    scaled = MaskStream(seed=9).keep_mask((50, 70), 0.25, scale=1 / 0.75, dtype=np.float32)
    assert scaled.dtype == np.float32
    np.testing.assert_array_equal(scaled, np.where(keep, np.float32(1 / 0.75), np.float32(0)))


# ------------------------------------------------------------------------------------------- backend layers
def _dropout_layer(fw, p):
    layer = layers_module(fw).Dropout(p)
    layer.train()
    return layer


def _backward(fw, layer, x_np, upstream_np):
    x = to_tensor(fw, x_np)
    if fw == "torch":
        x.requires_grad_(True)
    else:
        x.stop_gradient = False
    y = layer(x)
    (y * to_tensor(fw, upstream_np)).sum().backward()
    return to_numpy(fw, y), to_numpy(fw, x.grad)


def test_train_mode_output_and_gradient_are_the_mask_scaled(backend):
    """backend.seed(s) restarts the mask stream at s: the layer's mask is the stream's first mask for s."""
    be, backend = backend, backend.name
    p = 0.3
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 50, 40)).astype(np.float32) + 3.0   # no exact zeros in x
    upstream = rng.standard_normal(x.shape).astype(np.float32)
    be.seed(21)
    y, grad = _backward(backend, _dropout_layer(backend, p), x, upstream)
    keep = MaskStream(21).keep_mask(x.shape, p)                       # the mask the layer must have used
    scale = np.float32(1 / (1 - p))
    np.testing.assert_allclose(y, np.where(keep, x * scale, 0), rtol=1e-6, atol=0)
    np.testing.assert_allclose(grad, np.where(keep, upstream * scale, 0), rtol=1e-6, atol=0)


def test_eval_mode_and_p_zero_are_the_identity(backend):
    backend = backend.name
    x = np.random.default_rng(1).standard_normal((4, 9)).astype(np.float32)
    layer = layers_module(backend).Dropout(0.5)
    layer.eval()
    np.testing.assert_array_equal(to_numpy(backend, layer(to_tensor(backend, x))), x)
    np.testing.assert_array_equal(to_numpy(backend, _dropout_layer(backend, 0.0)(to_tensor(backend, x))), x)


def test_both_frameworks_drop_the_same_elements(both_backends):
    from core.dropout_masks import STREAM
    x = np.random.default_rng(2).standard_normal((3, 8, 64, 64)).astype(np.float32)
    outputs = {}
    for fw in ("torch", "paddle"):
        STREAM.reset(5)
        layer = _dropout_layer(fw, 0.1)
        outputs[fw] = [to_numpy(fw, layer(to_tensor(fw, x))) for _ in range(2)]
    for a, b in zip(outputs["torch"], outputs["paddle"]):
        np.testing.assert_array_equal(a == 0, b == 0)
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=0)
    assert ((outputs["torch"][0] == 0) != (outputs["torch"][1] == 0)).any()
