"""CPU speed kernels of the paddle backend: the same maths as the plain ops, faster on the CPU in float32.

backends/paddle/layers.py calls them by the names its torch twin uses for backends/torch/cpu_ops.py (linear,
layer_norm, takes_dropout, dropout), models/trar.py and models/vit_trar.py by span_softmax, models/vit.py by
standard_layer_norm; each falls back to the plain formula where its kernel does not apply (other devices and
dtypes, static programs of paddle.jit), so the layer files hold the model structure only.

On the CPU, Paddle's reductions (over leading axes: the gradient of a bias or of LayerNorm's a_2 / b_2; over the
last axis: LayerNorm's row sums) run single-threaded, and its broadcasting elementwise ops run 3-6x slower than
same-shape ones. A matmul with ones does each job ~5-30x faster: a sum as a product with a row or column of ones,
a broadcast as an exact outer product with ones (v * 1 = v). Broadcasts are bit-identical; sums (LayerNorm's mean
and std, parameter gradients) change at the last ulps (summation order), as any two reductions do. Elsewhere
(GPU: TF32 matmuls would round the operands) the helpers are the plain reductions and broadcasts.
docs/benchmarks.md has the measurements.
"""
import functools

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle.autograd import PyLayer

from core.dropout_masks import STREAM

# ---- reductions and broadcasts as matmuls with ones -------------------------------------------------------------

def _by_matmul(t):
    return t.place.is_cpu_place()


@functools.lru_cache(maxsize=256)
def cached_ones(shape, dtype):
    """A cached CPU tensor of ones (read only): creating one per call cost ~5 ms of a 60 ms demo step."""
    return paddle.ones(shape, dtype=dtype)


def _sum_rows(t):
    """Sum over every axis but the last."""
    flat = t.reshape([-1, t.shape[-1]])
    if not _by_matmul(flat):
        return flat.sum(0)
    return paddle.matmul(cached_ones((1, flat.shape[0]), flat.dtype), flat).reshape(t.shape[-1:])


def row_sums(flat):
    """(N, n) -> (N, 1): the sum of each row."""
    if not _by_matmul(flat):
        return flat.sum(-1, keepdim=True)
    return paddle.matmul(flat, cached_ones((flat.shape[1], 1), flat.dtype))


def spread(column, n):
    """(N, 1) -> (N, n), each row its value repeated (on the GPU: the column itself, for broadcasting)."""
    if not _by_matmul(column):
        return column
    return paddle.matmul(column, cached_ones((1, n), column.dtype))


def _stack_rows(vector, rows):
    """(n,) -> (rows, n), the vector in every row (on the GPU: the vector itself, for broadcasting)."""
    if not _by_matmul(vector):
        return vector
    return paddle.matmul(cached_ones((rows, 1), vector.dtype), vector.reshape([1, -1]))


def _repeat(x, times):
    """(B, ...) -> (B, times, ...): x copied ``times`` times after the batch axis, by one batched matmul with a column
    of ones (exact; on the CPU ~2x faster than paddle.tile, and no broadcasting op later)."""
    batch = x.shape[0]
    out = paddle.matmul(cached_ones((times, 1), x.dtype), x.reshape([batch, 1, -1]))
    return out.reshape([batch, times] + x.shape[1:])


def _trains(*params):
    """True when a dynamic-graph backward will need these tensors' gradients (not in export or no_grad)."""
    return paddle.in_dynamic_mode() and paddle.is_grad_enabled() and any(not p.stop_gradient for p in params)


def _keep_needs(ctx, *inputs):
    """Remember which tensor inputs of a PyLayer need a gradient (Paddle refuses one returned for an input with
    stop_gradient: a frozen weight, or an input computed from frozen layers only)."""
    ctx.needs = [not t.stop_gradient for t in inputs]


def _needed(ctx, *grads):
    """The backward's gradients, None where _keep_needs found the input frozen."""
    return tuple(g if need else None for g, need in zip(grads, ctx.needs))


# ---- Linear: the bias added without broadcasting ----------------------------------------------------------------

class _BiasAdd(PyLayer):
    """x + bias (bias over the last axis), the bias spread to x's shape first (a same-shape add is ~3x faster than
    Paddle's broadcasting one on the CPU; the same sums); the bias gradient by _sum_rows."""

    @staticmethod
    def forward(ctx, x, bias):
        _keep_needs(ctx, x, bias)
        if not _by_matmul(x):
            return x + bias
        return x + _stack_rows(bias, int(np.prod(x.shape[:-1]))).reshape(x.shape)

    @staticmethod
    def backward(ctx, grad):
        return _needed(ctx, grad, _sum_rows(grad))


def linear(x, weight, bias):
    """F.linear (paddle.nn.Linear's forward: matmul, then + bias) and, when training on the CPU, the same sums
    with a faster bias gradient. On a GPU it is paddle's own linear (which AMP's auto_cast knows)."""
    if bias is None or not _trains(bias) or not _by_matmul(x):
        return F.linear(x, weight, bias)
    return _BiasAdd.apply(paddle.matmul(x, weight), bias)


# ---- openvqa's LayerNorm: broadcast-free forward, backward written out ------------------------------------------

def _norm_scale_shift(x, a, b, eps):
    """LayerNorm's forward with every operand spread to x's shape and row sums as matmuls (CPU, dynamic graph):
    the output, and the centered rows, std and denominator the backward reuses."""
    n = x.shape[-1]
    flat = x.reshape([-1, n])
    rows = flat.shape[0]
    centered = flat - spread(row_sums(flat) / n, n)
    # Unbiased std written out: on CPU builds paddle.std runs a Python fallback with a host sync per call.
    std = paddle.sqrt(row_sums(centered * centered) / (n - 1))
    denom = std + eps
    # In place where the operand is this function's own: each fresh output is another pass over cold memory.
    y = (_stack_rows(a, rows) * centered).divide_(spread(denom, n)).add_(_stack_rows(b, rows))
    return y.reshape(x.shape), centered, std, denom


class _NormScaleShift(PyLayer):
    """openvqa's LayerNorm, forward and backward written out (the same maths as autograd through mean, sqrt, div;
    about half the passes over the activations).

    y = a * c / d + b with c = x - mean(x), d = std(x) + eps, std unbiased over the last axis (n entries):
    dx = g / d - mean(g / d) - c * sum(g * c) / (d^2 (n - 1) std), g = dy * a. A constant row (std 0) gives NaN,
    as autograd through the std does.

    On the CPU every operand is first spread to the full (N, n) shape and every row sum is a matmul (see the
    helpers above): the same products and quotients in the same order as the broadcasting formula; only the row
    sums' summation order differs.
    """

    @staticmethod
    def forward(ctx, x, a, b, eps):
        _keep_needs(ctx, x, a, b)
        y, centered, std, denom = _norm_scale_shift(x, a, b, eps)
        ctx.save_for_backward(centered, std, denom, a)
        return y

    @staticmethod
    def backward(ctx, dy):
        centered, std, denom, a = ctx.saved_tensor()
        rows, n = centered.shape
        flat = dy.reshape([rows, n])
        dy_d = flat / spread(denom, n)
        grad_a = _sum_rows(dy_d * centered)
        grad_b = _sum_rows(flat)
        g_d = dy_d.multiply_(_stack_rows(a, rows))          # dy_d is not needed again
        coef = row_sums(g_d * centered) / (std * denom * (n - 1))
        grad_x = g_d.subtract_(spread(row_sums(g_d) / n, n)).subtract_(centered * spread(coef, n))
        return _needed(ctx, grad_x.reshape(dy.shape), grad_a, grad_b)


def layer_norm(x, a, b, eps):
    """a * (x - mean) / (unbiased std + eps) + b over the last axis. Broadcast-free forward and written-out backward
    are CPU optimisations (eval too: 5.4 -> 2.0 ms on (32, 100, 512)); on a GPU (and under AMP's mixed dtypes) and
    in exported programs, the formula."""
    if paddle.in_dynamic_mode() and _by_matmul(x) and x.dtype == paddle.float32:
        if _trains(x, a, b):
            return _NormScaleShift.apply(x, a, b, eps)
        return _norm_scale_shift(x, a, b, eps)[0]
    mean = x.mean(-1, keepdim=True)
    centered = x - mean
    std = paddle.sqrt(paddle.sum(centered * centered, axis=-1, keepdim=True) / (x.shape[-1] - 1))
    return a * centered / (std + eps) + b


# ---- ViT's LayerNorm (paddle.nn.LayerNorm): paddle's forward, the backward written out ----------------------------

class _StandardNormBackward(PyLayer):
    """F.layer_norm over the last axis (biased variance, eps under the root) with paddle's own forward, so the same
    outputs, and a written-out backward: Paddle's CPU layer_norm_grad runs single-threaded, 15 ms on ViT-B's
    (8, 197, 768) where this takes 4.4 ms (1.5 -> 0.9 ms on the demo ViT's (32, 65, 64)).

    With xhat = (x - mean) * r, r = 1 / sqrt(var + eps), g = dy * weight:
    dx = r * (g - mean(g) - xhat * mean(g * xhat)), dweight = sum(dy * xhat), dbias = sum(dy). The mean and variance
    are recomputed from x (row sums as matmuls); they differ from the forward's at the last ulps at most, as the
    gradients then do from Paddle's kernel (tests/test_cpu_kernels.py: both as close to float64).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        _keep_needs(ctx, x, weight, bias)
        ctx.save_for_backward(x, weight)
        ctx.eps = eps
        return F.layer_norm(x, x.shape[-1:], weight, bias, eps)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensor()
        n = x.shape[-1]
        flat = x.reshape([-1, n])
        rows = flat.shape[0]
        centered = flat - spread(row_sums(flat) / n, n)
        r = spread(paddle.rsqrt(row_sums(centered * centered) / n + ctx.eps), n)
        xhat = centered.multiply_(r)                      # centered is not needed again
        dy = grad.reshape([rows, n])
        grad_weight = _sum_rows(dy * xhat)
        grad_bias = _sum_rows(dy)
        g = dy * _stack_rows(weight, rows)
        coef = spread(row_sums(g * xhat) / n, n)
        grad_x = g.subtract_(spread(row_sums(g) / n, n)).subtract_(xhat.multiply_(coef)).multiply_(r)
        return _needed(ctx, grad_x.reshape(grad.shape), grad_weight, grad_bias)


def standard_layer_norm(x, weight, bias, eps):
    """paddle.nn.LayerNorm's forward over the last axis (F.layer_norm); when training on the CPU in float32 with a
    weight and a bias, the same outputs with a faster backward (_StandardNormBackward)."""
    if (weight is None or bias is None or not _trains(x, weight, bias) or not _by_matmul(x)
            or x.dtype != paddle.float32):
        return F.layer_norm(x, x.shape[-1:], weight, bias, eps)
    return _StandardNormBackward.apply(x, weight, bias, eps)


# ---- dropout with core.dropout_masks' masks ---------------------------------------------------------------------

class _KeepScale(PyLayer):
    """x * multiplier (the mask scaled: 1 / (1 - p) where kept, 0 where dropped); the same product backward. A float
    multiplier rather than a bool mask, as in the torch twin: Paddle's CPU bool -> float cast costs more than the
    multiply (measured 54 ms vs 24 ms on a (64, 4, 8, 64, 64) attention map)."""

    @staticmethod
    def forward(ctx, x, multiplier):
        ctx.save_for_backward(multiplier)
        return x * multiplier

    @staticmethod
    def backward(ctx, grad):
        (multiplier,) = ctx.saved_tensor()
        return grad * multiplier


def takes_dropout(layer, x):
    """True where ``dropout`` replaces the nn.Dropout ``layer``'s own: float32 on the CPU in the dynamic graph, in
    the default mode (upscale_in_train, no axis)."""
    return (paddle.in_dynamic_mode() and x.place.is_cpu_place() and x.dtype == paddle.float32
            and layer.axis is None and layer.mode == "upscale_in_train")


def dropout(x, p):
    """Dropout of ``x`` with the next mask of core.dropout_masks (the torch backend's masks; ~10x faster to draw
    than paddle's serial CPU generator), kept elements scaled by 1 / (1 - p)."""
    multiplier = STREAM.keep_mask(tuple(x.shape), p, scale=1.0 / (1.0 - p), dtype=np.float32)
    # zero_copy: the tensor uses the numpy buffer (paddle.to_tensor would copy it, ~25 ms for the largest
    # masks); the PyLayer keeps the tensor, and with it the buffer, alive for the backward.
    return _KeepScale.apply(x, paddle.Tensor(multiplier, place=paddle.CPUPlace(), zero_copy=True))


# ---- TRAR's 'avg' routing pooling: the mean over the tokens ----------------------------------------------------

def mean_tokens(x):
    """(B, N, H) -> (B, H), the mean over the tokens: when training on the CPU a batched matmul with a row of ones
    (Paddle's mean over a middle axis and its gradient run single-threaded: 3.7 + 3.4 ms on (64, 64, 512), the
    product and its gradient ~0.5 ms; the sum's order differs, as any two reductions do)."""
    if not (_trains(x) and _by_matmul(x)):
        return x.mean(axis=1)
    return paddle.matmul(cached_ones((1, x.shape[1]), x.dtype), x).squeeze(1) / x.shape[1]


# ---- TRAR: the masked softmax of every span at once -------------------------------------------------------------

# A row sum under this means the row's largest kept score lies more than ~45 below the row's largest score: exp of
# the kept scores, shifted by the latter, would then come near float32's subnormals and lose digits.
_SHARED_EXP_MIN_SUM = 2.0 ** -60


def _span_softmax_one_exp(scores, masks):
    """The span softmax from one exp of the scores, shifted by each row's largest score over all keys: per order
    e * keep / row_sum(e * keep), which is softmax over the kept keys (a softmax is unchanged by the shift, and a
    masked key gets exactly 0, as exp(MASK_FILL - max) does). One exp on (B, heads, N, N) instead of Paddle's
    softmax on the L x larger filled scores (45 -> 22 ms on (64, 4, 8, 64, 64)); as accurate against float64 as
    softmax (tests/test_cpu_kernels.py). None when a row's kept scores lie so far below its largest that the shared
    shift would underflow them (the caller then takes the filled softmax)."""
    batch, heads, n = scores.shape[0], scores.shape[1], scores.shape[-1]
    orders = masks.shape[1]
    flat = scores.reshape([-1, n])
    e = paddle.exp(flat - spread(flat.max(-1, keepdim=True), n)).reshape([batch, heads, n, n])
    keep = _repeat(1.0 - masks.astype(scores.dtype).reshape([batch * orders, n, n]), heads)
    kept = _repeat(e, orders).reshape([-1, n]) * keep.reshape([-1, n])
    sums = row_sums(kept)
    if float(sums.min()) < _SHARED_EXP_MIN_SUM:
        return None
    return kept.divide_(spread(sums, n)).reshape([batch, orders, heads, n, n])


def _span_softmax_filled(scores, masks, mask_fill):
    """softmax(masked_fill(scores, masks)) per order, the fill written as x * keep + fill (see _SpanSoftmax)."""
    batch, heads, n = scores.shape[0], scores.shape[1], scores.shape[-1]
    orders = masks.shape[1]
    fill = masks.astype(scores.dtype).reshape([batch * orders, n, n])
    keep = _repeat(1.0 - fill, heads).reshape([batch, orders, heads, n, n])
    fill = _repeat(fill * mask_fill, heads).reshape([batch, orders, heads, n, n])
    return F.softmax(_repeat(scores, orders) * keep + fill, axis=-1)


def softmax_backward(probs, grad):
    """The gradient of a softmax over the last axis from its output: (grad - row_sum(grad * probs)) * probs, the row
    sums as matmuls. Paddle's own softmax_grad kernel (paddle._C_ops.softmax_grad) is 3x faster (8.5 vs 28 ms on
    ViT+TRAR's (8, 4, 12, 197, 197)) and as accurate, but its last bits differ enough that `python -m convert parity`'s
    training check on a trained TRAR demo checkpoint fails (logits after 3 Adam steps 1.86e-4 relative to torch's,
    tolerance 1e-4; tests/test_parity_tool.py), so the formula stays."""
    n = probs.shape[-1]
    flat_p, flat_g = probs.reshape([-1, n]), grad.reshape([-1, n])
    return (flat_g - spread(row_sums(flat_p * flat_g), n)).multiply_(flat_p).reshape(probs.shape)


class _SpanSoftmax(PyLayer):
    """softmax(masked_fill(scores, masks)) for every order at once: scores (B, heads, N, N), masks (B, L, 1, N, N)
    -> (B, L, heads, N, N); the CPU training path of TRAR's SARoutingBlock.

    The forward takes one exp of the scores for every order (_span_softmax_one_exp) unless a row is dead (every key
    masked) or its kept scores lie too far below its largest; then the filled softmax (_span_softmax_filled), whose
    masked fill is x * keep + fill with keep = 1, fill = 0 where kept and keep = 0, fill = MASK_FILL where masked:
    exactly masked_fill's values for finite scores (x * 1 + 0 = x, x * 0 + MASK_FILL = MASK_FILL), on operands of one
    shape (Paddle's CPU where broadcasting the scores over the orders and the mask over the heads took 4x as long).
    The backward is autograd's: the softmax gradient (softmax_backward), then the sum over the orders. A masked
    entry's probability is 0 (the one-exp path) or below 2e-28 (Paddle's softmax clips x - max at -64), so its softmax
    gradient is 0 or negligible, and the masked fill's gradient (zero at masked entries) only matters in rows whose
    every key is masked, which get it explicitly. Row sums and the sum over the L orders are matmuls with ones
    (paddle's last-axis reduction and expand gradient run single-threaded, 2-6x slower).
    """

    @staticmethod
    def forward(ctx, scores, masks, mask_fill):
        dead_rows = masks.all(-1, keepdim=True)                                  # (B, L, 1, N, 1)
        ctx.any_dead = bool(dead_rows.any())
        probs = None if ctx.any_dead else _span_softmax_one_exp(scores, masks)
        if probs is None:
            probs = _span_softmax_filled(scores, masks, mask_fill)
        ctx.save_for_backward(probs, dead_rows)
        return probs

    @staticmethod
    def backward(ctx, grad):
        probs, dead_rows = ctx.saved_tensor()
        grad_scores = softmax_backward(probs, grad)
        if ctx.any_dead:
            grad_scores = paddle.where(dead_rows, paddle.zeros([], grad_scores.dtype), grad_scores)
        batch, orders = grad_scores.shape[:2]
        summed = paddle.matmul(cached_ones((1, orders), grad_scores.dtype),
                               grad_scores.reshape([batch, orders, -1]))
        return summed.reshape([batch] + grad_scores.shape[2:]), None


def takes_span_softmax(scores):
    """True where ``span_softmax`` applies: the scores need a gradient in the dynamic graph, on the CPU."""
    return _trains(scores) and _by_matmul(scores)


def span_softmax(scores, masks, mask_fill):
    """softmax(masked_fill(scores, masks, mask_fill)) per order, scores (B, heads, N, N) and masks (B, L, 1, N, N)
    -> (B, L, heads, N, N), with a written-out backward (see _SpanSoftmax)."""
    return _SpanSoftmax.apply(scores, masks, mask_fill)


@paddle.no_grad()
def clip_grad_norm(params, max_norm):
    """paddle.nn.utils.clip_grad_norm_ (2-norm, torch's formula): the same per-parameter norms, each from one
    paddle.dot instead of p_norm, which Paddle runs single-threaded on the CPU (~10x slower: 0.3 s of an MMNasNet
    step with its 277 parameters). Returns the total norm."""
    grads = [p.grad_ for p in params if p.grad_ is not None]   # grad_: the gradient itself, writable in place
    if not grads:
        return paddle.to_tensor(0.0)
    norms = [paddle.sqrt(paddle.dot(g.reshape([-1]), g.reshape([-1]))) for g in grads]
    total = paddle.linalg.norm(paddle.stack(norms), 2.0)
    coef = (max_norm / (total + 1e-6)).clip(max=1.0)
    for g in grads:
        g.multiply_(coef)
    return total
