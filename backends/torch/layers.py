"""Blocks shared by the openvqa-family models (PyTorch). Mirrored in backends/paddle/layers.py.

Attribute names and registration order follow openvqa (ops/fc.py, ops/layer_norm.py, models/mcan), so state-dict
keys equal the original checkpoints' keys. Masks are bool tensors, True = masked, filled with MASK_FILL (never -inf:
a fully masked row then attends uniformly instead of giving NaN).
"""
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.cpu import has_avx512, is_amd
from core.dropout_masks import STREAM

MASK_FILL = -1e9
LSTM = nn.LSTM


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


class Linear(nn.Linear):
    """nn.Linear (same parameters, same maths); on the CPU in float32 its products go through oneDNN when
    _use_onednn_linear() says so. Traced, compiled or exported graphs and other devices get F.linear."""

    def forward(self, x):
        if (not ONEDNN_LINEAR or x.device.type != "cpu" or x.dtype != torch.float32
                or self.weight.dtype != torch.float32 or torch.is_autocast_enabled("cpu") or _in_graph_capture()):
            return super().forward(x)
        return _OneDnnLinear.apply(x.contiguous(), self.weight, self.bias)


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


class Dropout(nn.Dropout):
    """nn.Dropout whose CPU mask comes from core.dropout_masks (the same masks as the paddle twin, ~10x faster to
    draw than torch's serial CPU generator); on a GPU, or for other dtypes, it is torch's own dropout."""

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu" or self.inplace or x.dtype != torch.float32:
            return super().forward(x)
        multiplier = STREAM.keep_mask(tuple(x.shape), self.p, scale=1.0 / (1.0 - self.p), dtype=np.float32)
        return _KeepScale.apply(x, torch.from_numpy(multiplier))


class NetBase(nn.Module):
    """Base of the Nets: the stem and head that TRAR, MCAN and MMNasNet share (the paddle twin also maps LSTM
    parameter aliases when loading)."""

    def add_stem(self, cfg, pretrained_emb, token_size):
        """The question stem and the image adapter, registered first as in the original."""
        self.embedding = make_embedding(token_size, cfg.WORD_EMBED_SIZE, pretrained_emb)
        self.lstm = LSTM(input_size=cfg.WORD_EMBED_SIZE, hidden_size=cfg.HIDDEN_SIZE, num_layers=1, batch_first=True)
        self.adapter = Adapter(cfg)

    def add_head(self, cfg, answer_size):
        """AttFlat per modality, sum fusion, LayerNorm and the classifier, registered after the backbone."""
        self.attflat_img = AttFlat(cfg.HIDDEN_SIZE, cfg.FLAT_MLP_SIZE, cfg.FLAT_GLIMPSES, cfg.FLAT_OUT_SIZE,
                                   cfg.DROPOUT_R)
        self.attflat_lang = AttFlat(cfg.HIDDEN_SIZE, cfg.FLAT_MLP_SIZE, cfg.FLAT_GLIMPSES, cfg.FLAT_OUT_SIZE,
                                    cfg.DROPOUT_R)
        self.proj_norm = LayerNorm(cfg.FLAT_OUT_SIZE)
        self.proj = Linear(cfg.FLAT_OUT_SIZE, answer_size)

    def embed(self, frcn_feat, grid_feat, bbox_feat, ques_ix):
        lang_mask = make_mask(ques_ix.unsqueeze(2))
        lang_feat, _ = self.lstm(self.embedding(ques_ix))
        img_feat, img_mask = self.adapter(frcn_feat, grid_feat, bbox_feat)
        return lang_feat, lang_mask, img_feat, img_mask

    def classify(self, lang_feat, lang_mask, img_feat, img_mask):
        proj_feat = self.attflat_lang(lang_feat, lang_mask) + self.attflat_img(img_feat, img_mask)
        return self.proj(self.proj_norm(proj_feat))

    def set_tau(self, tau):
        """Only TRAR routes; every Net takes the same calls."""

    def routing_alphas(self):
        return []


def masked_fill(x, mask):
    """MASK_FILL where ``mask`` is True (fp32, as the original); clipped to the dtype's range so half precision
    gets no -inf (and no NaN rows)."""
    fill = max(MASK_FILL, torch.finfo(x.dtype).min)
    return x.masked_fill(mask, fill)


def make_mask(feature):
    """(B, n, d) -> (B, 1, 1, n) bool, True where a row is all zeros (padding)."""
    return (torch.sum(torch.abs(feature), dim=-1) == 0).unsqueeze(1).unsqueeze(2)


def linear_weight_names(net):
    """State-dict keys of the weights of every nn.Linear in ``net`` (found by module type, not by name or shape)."""
    return {f"{name}.weight" if name else "weight"
            for name, module in net.named_modules() if isinstance(module, nn.Linear)}


class FC(nn.Module):
    def __init__(self, in_size, out_size, dropout_r=0.0, use_relu=True):
        super().__init__()
        self.dropout_r = dropout_r
        self.use_relu = use_relu
        self.linear = Linear(in_size, out_size)
        if use_relu:
            self.relu = nn.ReLU()
        if dropout_r > 0:
            self.dropout = Dropout(dropout_r)

    def forward(self, x):
        x = self.linear(x)
        if self.use_relu:
            x = self.relu(x)
        if self.dropout_r > 0:
            x = self.dropout(x)
        return x


class MLP(nn.Module):
    def __init__(self, in_size, mid_size, out_size, dropout_r=0.0, use_relu=True):
        super().__init__()
        self.fc = FC(in_size, mid_size, dropout_r=dropout_r, use_relu=use_relu)
        self.linear = Linear(mid_size, out_size)

    def forward(self, x):
        return self.linear(self.fc(x))


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


class LayerNorm(nn.Module):
    """openvqa's LayerNorm: a_2 * (x - mean) / (unbiased std + eps) + b_2. Not torch.nn.LayerNorm."""

    def __init__(self, size, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.a_2 = nn.Parameter(torch.ones(size))
        self.b_2 = nn.Parameter(torch.zeros(size))

    def forward(self, x):
        # The written-out backward is a CPU optimisation; on a GPU (and under AMP's mixed dtypes) autograd does it.
        if (torch.is_grad_enabled() and (x.requires_grad or self.a_2.requires_grad or self.b_2.requires_grad)
                and x.device.type == "cpu" and x.dtype == torch.float32):
            return _NormScaleShift.apply(x, self.a_2, self.b_2, self.eps)
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, keepdim=True)
        return self.a_2 * (x - mean) / (std + self.eps) + self.b_2


class MHAtt(nn.Module):
    """Multi-head attention; heads are contiguous slices of the hidden vector."""

    def __init__(self, hidden_size, multi_head, dropout_r):
        super().__init__()
        if hidden_size % multi_head:
            raise ValueError(f"HIDDEN_SIZE {hidden_size} must be divisible by MULTI_HEAD {multi_head}")
        self.hidden_size = hidden_size
        self.multi_head = multi_head
        self.linear_v = Linear(hidden_size, hidden_size)
        self.linear_k = Linear(hidden_size, hidden_size)
        self.linear_q = Linear(hidden_size, hidden_size)
        self.linear_merge = Linear(hidden_size, hidden_size)
        self.dropout = Dropout(dropout_r)

    def split_heads(self, x):
        """(B, n, H) -> (B, heads, n, H / heads)."""
        return x.reshape(x.shape[0], -1, self.multi_head, self.hidden_size // self.multi_head).transpose(1, 2)

    def merge_heads(self, x):
        """(B, heads, n, H / heads) -> (B, n, H)."""
        return x.transpose(1, 2).reshape(x.shape[0], -1, self.hidden_size)

    def scores(self, k, q):
        return torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(q.shape[-1])

    def forward(self, v, k, q, mask):
        v = self.split_heads(self.linear_v(v))
        k = self.split_heads(self.linear_k(k))
        q = self.split_heads(self.linear_q(q))
        scores = self.scores(k, q)
        if mask is not None:
            scores = masked_fill(scores, mask)
        att_map = self.dropout(F.softmax(scores, dim=-1))
        return self.linear_merge(self.merge_heads(torch.matmul(att_map, v)))


class FFN(nn.Module):
    def __init__(self, hidden_size, ff_size, dropout_r):
        super().__init__()
        self.mlp = MLP(hidden_size, ff_size, hidden_size, dropout_r=dropout_r, use_relu=True)

    def forward(self, x):
        return self.mlp(x)


class AttFlat(nn.Module):
    """Attention pooling over tokens: ``glimpses`` softmax-weighted sums, concatenated, then linear_merge."""

    def __init__(self, in_size, mid_size, glimpses, out_size, dropout_r):
        super().__init__()
        self.glimpses = glimpses
        self.mlp = MLP(in_size, mid_size, glimpses, dropout_r=dropout_r, use_relu=True)
        self.linear_merge = Linear(in_size * glimpses, out_size)

    def forward(self, x, x_mask):
        att = self.mlp(x)
        att = masked_fill(att, x_mask.squeeze(1).squeeze(1).unsqueeze(2))
        att = F.softmax(att, dim=1)
        pooled = [torch.sum(att[:, :, i:i + 1] * x, dim=1) for i in range(self.glimpses)]
        return self.linear_merge(torch.cat(pooled, dim=1))


class SA(nn.Module):
    """Self-attention layer (openvqa MCAN SA, TRAR encoder): post-LN residual attention, then FFN."""

    def __init__(self, hidden_size, ff_size, multi_head, dropout_r):
        super().__init__()
        self.mhatt = MHAtt(hidden_size, multi_head, dropout_r)
        self.ffn = FFN(hidden_size, ff_size, dropout_r)
        self.dropout1 = Dropout(dropout_r)
        self.norm1 = LayerNorm(hidden_size)
        self.dropout2 = Dropout(dropout_r)
        self.norm2 = LayerNorm(hidden_size)

    def forward(self, y, y_mask):
        y = self.norm1(y + self.dropout1(self.mhatt(y, y, y, y_mask)))
        return self.norm2(y + self.dropout2(self.ffn(y)))


def make_embedding(token_size, embed_size, pretrained_emb):
    """Word embedding, overwritten by ``pretrained_emb`` (numpy (token_size, embed_size)) when given."""
    embedding = nn.Embedding(token_size, embed_size)
    if pretrained_emb is not None:
        check_pretrained_emb(pretrained_emb, token_size, embed_size)
        with torch.no_grad():
            embedding.weight.copy_(torch.as_tensor(pretrained_emb, dtype=torch.float32))
    return embedding


def check_pretrained_emb(pretrained_emb, token_size, embed_size):
    if tuple(pretrained_emb.shape) != (token_size, embed_size):
        raise ValueError(f"pretrained_emb has shape {tuple(pretrained_emb.shape)}, expected (token_size, "
                         f"WORD_EMBED_SIZE) = ({token_size}, {embed_size})")


class Adapter(nn.Module):
    """Projects the image features to HIDDEN_SIZE; the image mask comes from the raw features."""

    def __init__(self, cfg):
        super().__init__()
        self.data_format = cfg.DATA_FORMAT
        self.use_bbox_feat = False
        if cfg.DATA_FORMAT == "vqa":
            feat_size = cfg.FEAT_SIZE["vqa"]
            in_size = feat_size["FRCN_FEAT_SIZE"][1]
            self.use_bbox_feat = bool(cfg.USE_BBOX_FEAT)
            if self.use_bbox_feat:
                self.bbox_linear = Linear(feat_size["BBOX_FEAT_SIZE"][1], cfg.BBOXFEAT_EMB_SIZE)
                in_size += cfg.BBOXFEAT_EMB_SIZE
            self.frcn_linear = Linear(in_size, cfg.HIDDEN_SIZE)
        elif cfg.DATA_FORMAT == "clevr":
            self.grid_linear = Linear(cfg.FEAT_SIZE["clevr"]["GRID_FEAT_SIZE"][1], cfg.HIDDEN_SIZE)
        else:
            raise ValueError(f"DATA_FORMAT must be 'vqa' or 'clevr', got {cfg.DATA_FORMAT!r}")

    def forward(self, frcn_feat, grid_feat, bbox_feat):
        if self.data_format == "clevr":
            return self.grid_linear(grid_feat), make_mask(grid_feat)
        img_mask = make_mask(frcn_feat)
        if self.use_bbox_feat:
            frcn_feat = torch.cat((frcn_feat, self.bbox_linear(bbox_feat)), dim=-1)
        return self.frcn_linear(frcn_feat), img_mask
