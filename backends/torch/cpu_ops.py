"""CPU speed kernels of the torch backend: the same maths as the plain ops, faster on the CPU in float32.

backends/torch/layers.py calls them by the names its paddle twin uses for backends/paddle/cpu_ops.py (linear,
layer_norm, takes_dropout, dropout), models/trar.py and models/vit_trar.py by span_softmax, models/vit.py by
standard_layer_norm; each falls back to the plain formula where its kernel does not apply (other devices and
dtypes, autocast, traced / compiled / exported graphs), so the layer files hold the model structure only.
"""
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

from core.cpu import has_avx512, is_amd
from core.dropout_masks import STREAM

# ---- Linear: oneDNN products ------------------------------------------------------------------------------------

def _onednn_linear_op():
    """torch's oneDNN linear on dense CPU tensors (x @ w.T + b), or None where this torch build lacks it."""
    try:
        return torch.ops.mkldnn._linear_pointwise.default
    except (AttributeError, RuntimeError):
        return None


def _use_onednn_linear():
    """TWINVQA_ONEDNN_LINEAR=1 / 0 chooses; by default on AMD CPUs with AVX-512, where torch's MKL runs its AVX2
    code while oneDNN uses the AVX-512 the CPU has (core/cpu.py: 1.5-2x the matmul rate)."""
    choice = os.environ.get("TWINVQA_ONEDNN_LINEAR", "").strip()
    if choice not in ("", "0", "1"):
        raise ValueError(f"TWINVQA_ONEDNN_LINEAR: expected 1 or 0, got {choice!r}")
    wanted = choice == "1" if choice else (is_amd() and has_avx512())
    return wanted and torch.backends.mkldnn.is_available() and _LINEAR_OP is not None


_LINEAR_OP = _onednn_linear_op()
ONEDNN_LINEAR = _use_onednn_linear()


def _onednn(x, weight, bias=None):
    """x @ weight.T (+ bias) through oneDNN (x: (..., k), weight: (n, k); either may be a transposed view)."""
    return _LINEAR_OP(x, weight, bias, "none", [], "")


class _OneDnnLinear(torch.autograd.Function):
    """F.linear with forward and both gradient products in oneDNN; the same maths (sums in another order)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        rows = grad.reshape(-1, grad.shape[-1])
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _onednn(grad, weight.t())
        if ctx.needs_input_grad[1]:
            # grad_w = rows.T @ x2 needs one operand copied to a transpose (oneDNN computes A @ B.T from a
            # contiguous A and reads B through its strides); copying the narrower one is faster (measured:
            # (6400 x 512) inputs, 2048 outputs 44 -> 36 ms; MMNasNet's 4 -> 64 relation embedding 42 -> 7.5 ms).
            x2 = x.reshape(-1, x.shape[-1])
            if x2.shape[1] < rows.shape[1]:
                grad_w = _onednn(x2.t().contiguous(), rows.t()).t()
            else:
                grad_w = _onednn(rows.t(), x2.t())
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = rows.sum(0)
        return grad_x, grad_w, grad_b


def _in_graph_capture():
    return (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()
            or torch.onnx.is_in_onnx_export())


def linear(x, weight, bias):
    """F.linear (nn.Linear's forward); on the CPU in float32 its products go through oneDNN when
    _use_onednn_linear() says so. Traced, compiled or exported graphs and other devices get F.linear."""
    if (not ONEDNN_LINEAR or x.device.type != "cpu" or x.dtype != torch.float32
            or weight.dtype != torch.float32 or torch.is_autocast_enabled("cpu") or _in_graph_capture()):
        return F.linear(x, weight, bias)
    return _OneDnnLinear.apply(x.contiguous(), weight, bias)


# ---- openvqa's LayerNorm: the backward written out --------------------------------------------------------------

class _NormScaleShift(torch.autograd.Function):
    """openvqa's LayerNorm, forward and backward written out (the same maths as autograd through mean, std, div;
    about half the passes over the activations, which dominate its time on the CPU).

    y = a * c / d + b with c = x - mean(x), d = std(x) + eps, std unbiased over the last axis (n entries):
    dx = g / d - mean(g / d) - c * sum(g * c) / (d^2 (n - 1) std), g = dy * a. A constant row (std 0) gives NaN,
    as autograd through torch.std does.
    """

    @staticmethod
    def forward(ctx, x, a, b, eps):
        centered = x - x.mean(-1, keepdim=True)
        std = torch.linalg.vector_norm(centered, dim=-1, keepdim=True) / math.sqrt(x.shape[-1] - 1)
        denom = std + eps
        ctx.save_for_backward(centered, std, denom, a)
        return (a * centered).div_(denom).add_(b)

    @staticmethod
    def backward(ctx, dy):
        centered, std, denom, a = ctx.saved_tensors
        rows = tuple(range(dy.dim() - 1))
        dy_d = dy / denom
        grad_a = (dy_d * centered).sum(rows)
        grad_b = dy.sum(rows)
        g_d = dy_d.mul_(a)
        dot = (g_d * centered).sum(-1, keepdim=True)
        coef = dot.div_(std.mul(denom).mul_(centered.shape[-1] - 1))
        grad_x = (g_d - g_d.mean(-1, keepdim=True)).sub_(centered * coef)
        return grad_x, grad_a, grad_b, None


def layer_norm(x, a, b, eps):
    """a * (x - mean) / (unbiased std + eps) + b over the last axis. The written-out backward is a CPU optimisation;
    on a GPU (and under AMP's mixed dtypes) autograd does it."""
    if (torch.is_grad_enabled() and (x.requires_grad or a.requires_grad or b.requires_grad)
            and x.device.type == "cpu" and x.dtype == torch.float32):
        return _NormScaleShift.apply(x, a, b, eps)
    mean = x.mean(-1, keepdim=True)
    std = x.std(-1, keepdim=True)
    return a * (x - mean) / (std + eps) + b


# ---- ViT's LayerNorm (torch.nn.LayerNorm) -------------------------------------------------------------------------

def standard_layer_norm(x, weight, bias, eps):
    """torch.nn.LayerNorm's forward over the last axis (the paddle twin's CPU backward is written out; torch's own
    is fast)."""
    return F.layer_norm(x, x.shape[-1:], weight, bias, eps)


# ---- dropout with core.dropout_masks' masks ---------------------------------------------------------------------

class _KeepScale(torch.autograd.Function):
    """x * multiplier (the mask scaled: 1 / (1 - p) where kept, 0 where dropped); the same product backward. A float
    multiplier rather than a bool mask: torch's float * bool multiply casts the mask on every use (measured 27 ms vs
    12 ms on a (64, 4, 8, 64, 64) attention map), which costs more than the larger saved tensor."""

    @staticmethod
    def forward(ctx, x, multiplier):
        ctx.save_for_backward(multiplier)
        return x * multiplier

    @staticmethod
    def backward(ctx, grad):
        (multiplier,) = ctx.saved_tensors
        return grad * multiplier, None


def takes_dropout(layer, x):
    """True where ``dropout`` replaces the nn.Dropout ``layer``'s own: float32 on the CPU, not in place."""
    return x.device.type == "cpu" and not layer.inplace and x.dtype == torch.float32


def dropout(x, p):
    """Dropout of ``x`` with the next mask of core.dropout_masks (the paddle backend's masks; ~10x faster to draw
    than torch's serial CPU generator), kept elements scaled by 1 / (1 - p)."""
    multiplier = STREAM.keep_mask(tuple(x.shape), p, scale=1.0 / (1.0 - p), dtype=np.float32)
    return _KeepScale.apply(x, torch.from_numpy(multiplier))


# ---- TRAR's 'avg' routing pooling: the mean over the tokens ----------------------------------------------------

def mean_tokens(x):
    """(B, N, H) -> (B, H), the mean over the tokens (the paddle twin's is a matmul with ones on the CPU; torch's
    own mean is as fast)."""
    return x.mean(dim=1)


# ---- TRAR: the masked softmax of every span at once -------------------------------------------------------------

class _SpanSoftmax(torch.autograd.Function):
    """softmax(masked_fill(scores, masks)) for every order at once: scores (B, heads, N, N), masks (B, L, 1, N, N) or
    (1, L, 1, N, N) -> (B, L, heads, N, N); the CPU training path of TRAR's SARoutingBlock and ViT+TRAR's attention,
    the same values as autograd through masked_fill and softmax. Forward: one torch.where pass instead of
    masked_fill's copy of the broadcast scores and its in-place fill. Backward: autograd's own steps (softmax
    backward, sum over the orders as sum_to does). A masked entry has probability exactly 0 (exp(-1e9 - max)
    underflows), so the softmax gradient is already 0 there and the masked fill's zeroing only changes rows whose
    every key is masked: those rows alone get it (as the paddle twin), not a pass over every entry (8 ms of a
    default TRAR layer's backward)."""

    @staticmethod
    def forward(ctx, scores, masks, mask_fill):
        probs = torch.softmax(torch.where(masks, mask_fill, scores.unsqueeze(1)), dim=-1)
        dead_rows = masks.all(-1, keepdim=True)                             # (B or 1, L, 1, N, 1)
        ctx.any_dead = bool(dead_rows.any())
        ctx.save_for_backward(probs, dead_rows)
        return probs

    @staticmethod
    def backward(ctx, grad):
        probs, dead_rows = ctx.saved_tensors
        grad_scores = torch._softmax_backward_data(grad, probs, -1, probs.dtype)
        if ctx.any_dead:
            grad_scores.masked_fill_(dead_rows, 0)
        return grad_scores.sum(1), None, None


def takes_span_softmax(scores):
    """True where ``span_softmax`` applies: float32 scores needing a gradient on the CPU, outside graph capture."""
    return (torch.is_grad_enabled() and scores.requires_grad and scores.device.type == "cpu"
            and scores.dtype == torch.float32 and not torch.is_autocast_enabled("cpu") and not _in_graph_capture())


def span_softmax(scores, masks, mask_fill):
    """softmax(masked_fill(scores, masks, mask_fill)) per order, scores (B, heads, N, N) and masks (B, L, 1, N, N)
    bool (or (1, L, 1, N, N), the same masks for every sample: ViT+TRAR) -> (B, L, heads, N, N), with a written-out
    backward (see _SpanSoftmax)."""
    return _SpanSoftmax.apply(scores, masks, mask_fill)

