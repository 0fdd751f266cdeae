"""Mixed precision (`--AMP`) as far as a CPU can check it: the models under torch's autocast, the torch trainer's
loss scaling, and the attention mask fill in float16.

No GPU here, so this runs torch's CPU autocast (bfloat16) instead of CUDA's (float16). Both run matmuls and
linear layers in low precision and keep reductions such as softmax in float32, so a dtype mismatch in our model code
(a float32 buffer meeting a low-precision activation, a CPU-only fast path taken under autocast) fails here as it
would on a GPU. Not covered: float16's narrow range (bfloat16 has float32's exponent; layers.masked_fill clips its
fill to the dtype for that). Paddle's auto_cast and GradScaler switch themselves off on the CPU (with a warning;
outputs stay float32), so paddle's AMP has no counterpart here. Each check compares against float32: bfloat16 keeps
8 significant bits, so the bounds are loose, but a wrong mask or a lost branch moves the result far more.
On a CPU without a bfloat16 LSTM kernel (oneDNN has none without AVX-512) the question LSTM alone runs in float32
inside the autocast region; every other layer still runs under autocast.
"""
import contextlib
import functools

import numpy as np
import pytest
import torch

from tests.model_configs import (
    ANSWER_SIZE,
    INPUT_KEYS,
    TOKEN_SIZE,
    build,
    layers_module,
    make_batch,
    tiny_cfg,
    to_numpy,
    to_tensor,
)
from tests.test_mmnasnet import TINY, model_cfg, tiny_inputs


def _case(model):
    if model == "mmnasnet":
        cfg = model_cfg(**TINY, dropout=0.0)
        return build("torch", cfg, seed=0, token_size=20, answer_size=10), tiny_inputs()
    cfg = tiny_cfg(model, "vqa", DROPOUT_R=0.0, ROUTING="soft", BINARIZE=False)
    return build("torch", cfg, seed=0, token_size=TOKEN_SIZE, answer_size=ANSWER_SIZE), make_batch(cfg)


@functools.lru_cache(maxsize=1)
def _cpu_has_bf16_lstm():
    lstm = torch.nn.LSTM(4, 4, batch_first=True)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            lstm(torch.zeros(1, 2, 4))
    except RuntimeError:   # "could not create a primitive descriptor for the LSTM forward propagation primitive"
        return False
    return True


def _run_lstm_in_float32(lstm):
    """The LSTM's forward outside autocast, on float32 input (an instance attribute: the module class is untouched)."""
    plain = lstm.forward

    def forward(x, *args):
        with torch.autocast("cpu", enabled=False):
            return plain(x.float(), *args)

    lstm.forward = forward


@contextlib.contextmanager
def _lstm_in_float32(lstm):
    _run_lstm_in_float32(lstm)
    try:
        yield
    finally:
        del lstm.forward


def _logits_and_grads(net, batch, autocast):
    net.train()   # dropout is 0: train mode only so that the backward runs as in training
    net.zero_grad(set_to_none=True)
    inputs = [torch.as_tensor(batch[k]) for k in INPUT_KEYS]
    fallback = _lstm_in_float32(net.lstm) if autocast and not _cpu_has_bf16_lstm() else contextlib.nullcontext()
    with fallback, torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits = net(*inputs)
    logits = logits.float()
    logits.sum().backward()
    grads = {name: p.grad.detach().clone() for name, p in net.named_parameters() if p.grad is not None}
    return logits.detach().numpy(), grads


@pytest.mark.parametrize("model", ["trar", "mcan_small", "mmnasnet"])
def test_autocast_forward_and_backward_follow_float32(model):
    net, batch = _case(model)
    ref_logits, ref_grads = _logits_and_grads(net, batch, autocast=False)
    logits, grads = _logits_and_grads(net, batch, autocast=True)

    assert np.isfinite(logits).all()
    scale = np.abs(ref_logits).max()
    assert np.abs(logits - ref_logits).max() <= 0.05 * scale

    assert set(grads) == set(ref_grads)   # every parameter still gets a gradient
    total = torch.sqrt(sum((g.double() ** 2).sum() for g in ref_grads.values()))
    errors = {}
    for name, g in grads.items():
        assert torch.isfinite(g).all(), name
        ref = ref_grads[name].double()
        # Relative to the parameter's own gradient, floored at 1e-3 of the whole: some gradients are zero in exact
        # arithmetic (a key bias shifts every score of a query alike) and are rounding noise in both precisions.
        errors[name] = float((g.double() - ref).norm() / (ref.norm() + 1e-3 * total))
    worst = max(errors, key=errors.get)
    assert errors[worst] < 0.3, f"{worst}: bfloat16 gradient off by {errors[worst]:.2f} of the float32 one"
    overall = torch.sqrt(sum(((grads[k].double() - ref_grads[k].double()) ** 2).sum() for k in grads)) / total
    assert overall < 0.1


def _amp_trainer(scaled):
    """The torch trainer on a tiny TRAR in its AMP mode, on the CPU: bfloat16 autocast and a CPU GradScaler, either
    scaling (as on a GPU) or disabled (the same code path without loss scaling)."""
    from backends import get_backend
    be = get_backend("torch")
    be.set_device("")
    cfg = tiny_cfg("trar", "vqa", BATCH_SIZE=4, GRAD_ACCU_STEPS=2, GRAD_NORM_CLIP=0.5, DROPOUT_R=0.0,
                   ROUTING="soft", BINARIZE=False)
    net = build("torch", cfg, seed=3)
    if not _cpu_has_bf16_lstm():
        _run_lstm_in_float32(net.lstm)
    trainer = be.make_trainer(net, cfg)
    trainer.amp = True
    trainer.autocast = {"device_type": "cpu", "dtype": torch.bfloat16}
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16, enabled=scaled)
    return trainer, cfg


def test_amp_train_steps_with_loss_scaling_equal_those_without():
    """Loss scaling by a power of two is exact, so an AMP step must give what the same step without scaling gives,
    provided the trainer unscales before clipping and lets the scaler drive Adam. Clipping is active (these steps'
    gradient norms are far above 0.5), so clipping scaled gradients would show."""
    from tests.test_backend_runtime import _batch
    scaled, cfg = _amp_trainer(scaled=True)
    plain, _ = _amp_trainer(scaled=False)
    for step in range(3):
        batch = _batch(cfg, seed=step)
        loss_scaled, loss_plain = scaled.train_step(batch, 1e-3), plain.train_step(batch, 1e-3)
        assert np.isfinite(loss_scaled) and loss_scaled == pytest.approx(loss_plain, rel=1e-6)
        for trainer in (scaled, plain):   # the gradients Adam saw: unscaled, then clipped to norm 0.5
            norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in trainer.params))
            assert float(norm) == pytest.approx(0.5, rel=1e-4)
    assert scaled.scaler.get_scale() == 2.0 ** 16   # no step overflowed, so none was skipped
    for (name, a), b in zip(scaled.net.named_parameters(), plain.net.parameters()):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=0, atol=1e-6, err_msg=name)


def test_mask_fill_stays_finite_in_half_precision(backend):
    """-1e9 overflows float16 to -inf, and a fully masked row of -inf is NaN after softmax; the fill is clipped to
    the dtype's range instead, so such a row attends uniformly, as in float32. (Paddle's CPU has no float16 `where`
    kernel, its GPU has: paddle is checked in float32 only.)"""
    fw = backend.name
    for dtype in ("float16", "float32") if fw == "torch" else ("float32",):
        scores = np.random.default_rng(0).standard_normal((2, 1, 3, 4)).astype(dtype)
        mask = np.zeros((2, 1, 1, 4), bool)
        mask[0, ..., 2:] = True   # padding
        mask[1] = True            # nothing to attend to
        filled = to_numpy(fw, layers_module(fw).masked_fill(to_tensor(fw, scores), to_tensor(fw, mask)))
        assert filled.dtype == np.dtype(dtype) and np.isfinite(filled).all()
        np.testing.assert_array_equal(filled[0, ..., :2], scores[0, ..., :2])
        assert (filled[0, ..., 2:] == max(-1e9, float(np.finfo(dtype).min))).all()
        shifted = filled.astype(np.float64) - filled.max(-1, keepdims=True)
        att = np.exp(shifted) / np.exp(shifted).sum(-1, keepdims=True)
        np.testing.assert_allclose(att[1], 0.25)
        np.testing.assert_allclose(att[0, ..., 2:], 0.0, atol=1e-30)
