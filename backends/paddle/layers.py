"""Blocks shared by the openvqa-family models (PaddlePaddle). Mirror of backends/torch/layers.py.

Same class names, attribute names and registration order as the torch file, so the structured state-dict keys equal
the original checkpoints' keys. Paddle's Linear weight is [in, out] (torch: [out, in]). Masks are bool tensors,
True = masked, filled with MASK_FILL (never -inf: a fully masked row then attends uniformly instead of giving NaN).
"""
import functools
import math

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn
from paddle.autograd import PyLayer

from core.dropout_masks import STREAM

MASK_FILL = -1e9


def masked_fill(x, mask):
    """MASK_FILL where ``mask`` (broadcastable to x's shape) is True (fp32, as the original); clipped to the dtype's
    range so half precision gets no -inf (and no NaN rows)."""
    fill = max(MASK_FILL, float(paddle.finfo(x.dtype).min))
    # paddle.where rather than paddle.masked_fill: same values, and paddle2onnx has no converter for masked_fill
    if not paddle.in_dynamic_mode():
        # In a static program paddle.where broadcasts operands of different shapes by adding zeros of each one's
        # shape: five full-size adds and two casts, which under Paddle Inference's oneDNN made an exported TRAR
        # 1.7x slower than the dynamic graph. Same-shape operands make it one op.
        return paddle.where(paddle.expand(mask, paddle.shape(x)), paddle.full(paddle.shape(x), fill, x.dtype), x)
    return paddle.where(mask, paddle.full([], fill, x.dtype), x)


def make_mask(feature):
    """(B, n, d) -> (B, 1, 1, n) bool, True where a row is all zeros (padding)."""
    return (paddle.sum(paddle.abs(feature), axis=-1) == 0).unsqueeze(1).unsqueeze(2)


def linear_weight_names(net):
    """State-dict keys of the weights of every nn.Linear in ``net`` (found by layer type, not by name or shape)."""
    return {f"{name}.weight" if name else "weight"
            for name, layer in net.named_sublayers(include_self=True) if isinstance(layer, nn.Linear)}


class LSTM(nn.LSTM):
    """paddle.nn.LSTM whose state_dict() holds each parameter once, under torch's name.

    paddle.nn.LSTM lists every tensor twice in its state dict: as ``weight_ih_l0`` (torch's name) and as
    ``0.cell.weight_ih`` (the per-cell alias of the same Parameter). A state-dict hook drops the aliases, so
    ``Net.state_dict()`` has exactly the torch key set (``lstm.weight_ih_l0``, ``lstm.weight_hh_l0``,
    ``lstm.bias_ih_l0``, ``lstm.bias_hh_l0``), in the same [4H, in] layout and gate order (i, f, g, o).
    Paddle's ``set_state_dict`` runs no hooks and expects both names; ``NetBase.set_state_dict`` fills in whichever
    name is missing, so a dict with torch names, with paddle's aliases, or with both loads without warnings.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Computed once: the hook also runs inside paddle.jit.save, where named_parameters() cannot be called.
        self.aliases = cell_aliases(self)
        self.register_state_dict_hook(self._drop_cell_aliases)

    def _drop_cell_aliases(self, destination):
        # The hook gets the whole dict being built, whose outer prefix it does not know: drop "<p>0.cell.weight_ih"
        # only when its twin "<p>weight_ih_l0" is there too.
        for alias, torch_name in self.aliases.items():
            for key in [k for k in destination if k == alias or k.endswith("." + alias)]:
                if key[:len(key) - len(alias)] + torch_name in destination:
                    del destination[key]
        return destination


def cell_aliases(lstm):
    """{paddle alias relative to ``lstm`` (e.g. '0.cell.weight_ih'): torch name (e.g. 'weight_ih_l0')}, matched by
    Parameter identity."""
    torch_names = {id(p): name for name, p in lstm.named_parameters(include_sublayers=False)}
    aliases = {}
    for prefix, layer in lstm.named_sublayers():
        for name, p in layer.named_parameters(include_sublayers=False):
            if id(p) in torch_names:
                aliases[f"{prefix}.{name}"] = torch_names[id(p)]
    return aliases


def lstm_aliases(net):
    """{full alias key: full torch key} for every paddle.nn.LSTM inside ``net``."""
    pairs = {}
    for prefix, layer in net.named_sublayers(include_self=True):
        if isinstance(layer, nn.LSTM):
            base = f"{prefix}." if prefix else ""
            aliases = layer.aliases if isinstance(layer, LSTM) else cell_aliases(layer)
            pairs.update({base + alias: base + name for alias, name in aliases.items()})
    return pairs


# ---- faster reductions and broadcasts on the CPU -----------------------------------------------------------------
# On the CPU, Paddle's reductions (over leading axes: the gradient of a bias or of LayerNorm's a_2 / b_2; over the
# last axis: LayerNorm's row sums) run single-threaded, and its broadcasting elementwise ops run 3-6x slower than
# same-shape ones. A matmul with ones does each job ~5-30x faster: a sum as a product with a row or column of ones,
# a broadcast as an exact outer product with ones (v * 1 = v). Broadcasts are bit-identical; sums (LayerNorm's mean
# and std, parameter gradients) change at the last ulps (summation order), as any two reductions do. Elsewhere
# (GPU: TF32 matmuls would round the operands) the helpers are the plain reductions and broadcasts.
# docs/benchmarks.md has the measurements.

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


class _BiasAdd(PyLayer):
    """x + bias (bias over the last axis), the bias spread to x's shape first (a same-shape add is ~3x faster than
    Paddle's broadcasting one on the CPU; the same sums); the bias gradient by _sum_rows."""

    @staticmethod
    def forward(ctx, x, bias):
        if not _by_matmul(x):
            return x + bias
        return x + _stack_rows(bias, int(np.prod(x.shape[:-1]))).reshape(x.shape)

    @staticmethod
    def backward(ctx, grad):
        return grad, _sum_rows(grad)


def _trains(*params):
    """True when a dynamic-graph backward will need these tensors' gradients (not in export or no_grad)."""
    return paddle.in_dynamic_mode() and paddle.is_grad_enabled() and any(not p.stop_gradient for p in params)


class Linear(nn.Linear):
    """paddle.nn.Linear with the same parameters and forward (matmul, then + bias) and, when training on the CPU, a
    faster bias gradient. On a GPU it is paddle's own linear (which AMP's auto_cast knows)."""

    def forward(self, x):
        if self.bias is None or not _trains(self.bias) or not _by_matmul(x):
            return super().forward(x)
        return _BiasAdd.apply(paddle.matmul(x, self.weight), self.bias)


class _KeepScale(PyLayer):
    """x * multiplier (the mask scaled: 1 / (1 - p) where kept, 0 where dropped); the same product backward. The
    torch twin keeps a bool mask; here a float multiplier, because Paddle's CPU bool -> float cast costs more than
    the multiply (measured 54 ms vs 24 ms on a (64, 4, 8, 64, 64) attention map)."""

    @staticmethod
    def forward(ctx, x, multiplier):
        ctx.save_for_backward(multiplier)
        return x * multiplier

    @staticmethod
    def backward(ctx, grad):
        (multiplier,) = ctx.saved_tensor()
        return grad * multiplier


class Dropout(nn.Dropout):
    """nn.Dropout whose CPU mask comes from core.dropout_masks (the same masks as the torch twin, ~10x faster to
    draw than paddle's serial CPU generator); on other devices, or in other modes, it is paddle's own dropout."""

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        if not (paddle.in_dynamic_mode() and x.place.is_cpu_place() and x.dtype == paddle.float32
                and self.axis is None and self.mode == "upscale_in_train"):
            return super().forward(x)
        multiplier = STREAM.keep_mask(tuple(x.shape), self.p, scale=1.0 / (1.0 - self.p),
                                      dtype=np.float32)
        # zero_copy: the tensor uses the numpy buffer (paddle.to_tensor would copy it, ~25 ms for the largest
        # masks); the PyLayer keeps the tensor, and with it the buffer, alive for the backward.
        return _KeepScale.apply(x, paddle.Tensor(multiplier, place=paddle.CPUPlace(), zero_copy=True))


class NetBase(nn.Layer):
    """Base of the Nets: the stem and head that TRAR, MCAN and MMNasNet share; set_state_dict accepts LSTM tensors
    under torch names, paddle aliases or both."""

    def add_stem(self, cfg, pretrained_emb, token_size):
        """The question stem and the image adapter, registered first as in the original."""
        self.embedding = make_embedding(token_size, cfg.WORD_EMBED_SIZE, pretrained_emb)
        self.lstm = LSTM(input_size=cfg.WORD_EMBED_SIZE, hidden_size=cfg.HIDDEN_SIZE, num_layers=1, time_major=False)
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

    def set_state_dict(self, state_dict, use_structured_name=True):
        state_dict = dict(state_dict)
        for alias, name in lstm_aliases(self).items():
            if name in state_dict and alias not in state_dict:
                state_dict[alias] = state_dict[name]
            elif alias in state_dict and name not in state_dict:
                state_dict[name] = state_dict[alias]
        return super().set_state_dict(state_dict, use_structured_name)


class FC(nn.Layer):
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


class MLP(nn.Layer):
    def __init__(self, in_size, mid_size, out_size, dropout_r=0.0, use_relu=True):
        super().__init__()
        self.fc = FC(in_size, mid_size, dropout_r=dropout_r, use_relu=use_relu)
        self.linear = Linear(mid_size, out_size)

    def forward(self, x):
        return self.linear(self.fc(x))


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
    y = _stack_rows(a, rows) * centered / spread(denom, n) + _stack_rows(b, rows)
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
        g_d = dy_d * _stack_rows(a, rows)
        coef = row_sums(g_d * centered) / (std * denom * (n - 1))
        grad_x = g_d - spread(row_sums(g_d) / n, n) - centered * spread(coef, n)
        return grad_x.reshape(dy.shape), grad_a, grad_b


class LayerNorm(nn.Layer):
    """openvqa's LayerNorm: a_2 * (x - mean) / (unbiased std + eps) + b_2. Not paddle.nn.LayerNorm."""

    def __init__(self, size, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.a_2 = self.create_parameter([size], default_initializer=nn.initializer.Constant(1.0))
        self.b_2 = self.create_parameter([size], default_initializer=nn.initializer.Constant(0.0))

    def forward(self, x):
        # Broadcast-free forward and written-out backward are CPU optimisations (eval too: 5.4 -> 2.0 ms on
        # (32, 100, 512)); on a GPU (and under AMP's mixed dtypes) and in exported programs, the formula below.
        if paddle.in_dynamic_mode() and _by_matmul(x) and x.dtype == paddle.float32:
            if _trains(x, self.a_2, self.b_2):
                return _NormScaleShift.apply(x, self.a_2, self.b_2, self.eps)
            return _norm_scale_shift(x, self.a_2, self.b_2, self.eps)[0]
        mean = x.mean(-1, keepdim=True)
        centered = x - mean
        std = paddle.sqrt(paddle.sum(centered * centered, axis=-1, keepdim=True) / (x.shape[-1] - 1))
        return self.a_2 * centered / (std + self.eps) + self.b_2


class MHAtt(nn.Layer):
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
        # 0 keeps the batch size as is, also when it is unknown (-1) in an exported static graph
        return x.reshape([0, -1, self.multi_head, self.hidden_size // self.multi_head]).transpose([0, 2, 1, 3])

    def merge_heads(self, x):
        """(B, heads, n, H / heads) -> (B, n, H)."""
        return x.transpose([0, 2, 1, 3]).reshape([0, -1, self.hidden_size])

    def scores(self, k, q):
        return paddle.matmul(q, k, transpose_y=True) / math.sqrt(q.shape[-1])

    def forward(self, v, k, q, mask):
        v = self.split_heads(self.linear_v(v))
        k = self.split_heads(self.linear_k(k))
        q = self.split_heads(self.linear_q(q))
        scores = self.scores(k, q)
        if mask is not None:
            scores = masked_fill(scores, mask)
        att_map = self.dropout(F.softmax(scores, axis=-1))
        return self.linear_merge(self.merge_heads(paddle.matmul(att_map, v)))


class FFN(nn.Layer):
    def __init__(self, hidden_size, ff_size, dropout_r):
        super().__init__()
        self.mlp = MLP(hidden_size, ff_size, hidden_size, dropout_r=dropout_r, use_relu=True)

    def forward(self, x):
        return self.mlp(x)


class AttFlat(nn.Layer):
    """Attention pooling over tokens: ``glimpses`` softmax-weighted sums, concatenated, then linear_merge."""

    def __init__(self, in_size, mid_size, glimpses, out_size, dropout_r):
        super().__init__()
        self.glimpses = glimpses
        self.mlp = MLP(in_size, mid_size, glimpses, dropout_r=dropout_r, use_relu=True)
        self.linear_merge = Linear(in_size * glimpses, out_size)

    def forward(self, x, x_mask):
        att = self.mlp(x)
        att = masked_fill(att, x_mask.squeeze(1).squeeze(1).unsqueeze(2))
        att = F.softmax(att, axis=1)
        # every glimpse's weighted sum over the tokens at once, att^T x: (B, G, N) x (B, N, H) -> (B, G * H), the
        # glimpses in order as the concatenation of the torch twin. Paddle's broadcasting multiply, sum and their
        # gradient took 16 ms against 1 ms for the matmul on a default (64, 64, 512) (the same sums, another order).
        pooled = paddle.matmul(att, x, transpose_x=True)
        return self.linear_merge(pooled.reshape([0, -1]))   # 0: the batch axis as it is (also when exported)


class SA(nn.Layer):
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
    # N(0, 1) as torch's nn.Embedding (see init_like_torch)
    embedding = nn.Embedding(token_size, embed_size, weight_attr=nn.initializer.Normal(0.0, 1.0))
    if pretrained_emb is not None:
        check_pretrained_emb(pretrained_emb, token_size, embed_size)
        embedding.weight.set_value(paddle.to_tensor(pretrained_emb, dtype="float32"))
    return embedding


def check_pretrained_emb(pretrained_emb, token_size, embed_size):
    if tuple(pretrained_emb.shape) != (token_size, embed_size):
        raise ValueError(f"pretrained_emb has shape {tuple(pretrained_emb.shape)}, expected (token_size, "
                         f"WORD_EMBED_SIZE) = ({token_size}, {embed_size})")


class Adapter(nn.Layer):
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
            frcn_feat = paddle.concat((frcn_feat, self.bbox_linear(bbox_feat)), axis=-1)
        return self.frcn_linear(frcn_feat), img_mask


def init_like_torch(net):
    """Re-draw every Linear as PyTorch initialises it: weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    The original models train from PyTorch's defaults; Paddle's (Xavier weights, zero biases) train the same net to a
    lower accuracy band on the demo data. The Embedding is drawn N(0, 1) in make_embedding and paddle.nn.LSTM already
    draws U(-1/sqrt(hidden), 1/sqrt(hidden)) as torch does. Uses paddle's RNG, so paddle.seed fixes it.
    """
    for layer in net.sublayers(include_self=True):
        if isinstance(layer, nn.Linear):
            bound = 1.0 / math.sqrt(layer.weight.shape[0])   # Paddle's Linear weight is [in, out]
            init = nn.initializer.Uniform(-bound, bound)
            init(layer.weight)
            if layer.bias is not None:
                init(layer.bias)
    return net
