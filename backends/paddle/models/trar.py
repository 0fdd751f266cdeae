"""TRAR (ICCV 2021, rentainhe/TRAR-VQA) in PaddlePaddle. Mirror of backends/torch/models/trar.py.

Net = question embedding + LSTM, image adapter, TRAR_ED (SA encoder on the question; decoder layers whose image
self-attention mixes several span-limited attention maps with per-sample routing weights), two AttFlat poolings,
sum fusion, LayerNorm, classifier. Structured parameter names equal the original's (Linear weights are [in, out]).

Deliberate differences from the original:
- hard routing draws Gumbel noise only in training; at eval alphas = softmax(log_softmax(logits) / tau), which is
  deterministic (the original samples noise at eval too, so its predictions vary from run to run);
- 'fc' pooling works at batch size 1 (the original squeezes the batch axis of the mask away);
- the span masks are built once at construction (core.masks) as a non-persistable buffer, not on every forward.
"""
import paddle
import paddle.nn.functional as F
from paddle import nn

from backends.paddle import cpu_ops
from backends.paddle.layers import (
    FFN,
    MASK_FILL,
    SA,
    AttFlat,
    Dropout,
    LayerNorm,
    Linear,
    MHAtt,
    NetBase,
    make_mask,
    masked_fill,
)
from core.masks import span_mask_stack

POOLINGS = ("avg", "attention", "fc")
ROUTINGS = ("soft", "hard")


def image_rows(cfg):
    if cfg.DATA_FORMAT == "clevr":
        return cfg.FEAT_SIZE["clevr"]["GRID_FEAT_SIZE"][0]
    return cfg.FEAT_SIZE["vqa"]["FRCN_FEAT_SIZE"][0]


def check_trar_cfg(cfg):
    if cfg.ROUTING not in ROUTINGS:
        raise ValueError(f"ROUTING must be one of {ROUTINGS}, got {cfg.ROUTING!r}")
    if cfg.POOLING not in POOLINGS:
        raise ValueError(f"POOLING must be one of {POOLINGS}, got {cfg.POOLING!r}")
    rows = image_rows(cfg)
    if cfg.IMG_SCALE * cfg.IMG_SCALE != rows:
        raise ValueError(f"IMG_SCALE {cfg.IMG_SCALE} gives a {cfg.IMG_SCALE}x{cfg.IMG_SCALE} grid, but FEAT_SIZE "
                         f"has {rows} image rows for DATA_FORMAT {cfg.DATA_FORMAT!r}; expected IMG_SCALE**2 == {rows}")


class AttFlatPool(AttFlat):
    """'attention' pooling of the routing block: a one-glimpse AttFlat followed by its own LayerNorm."""

    def __init__(self, hidden_size, dropout_r):
        super().__init__(hidden_size, hidden_size, 1, hidden_size, dropout_r)
        self.norm = LayerNorm(hidden_size)

    def forward(self, x, x_mask):
        return self.norm(super().forward(x, x_mask))


class RoutingBlock(nn.Layer):
    """Per-sample routing weights (B, L) over the spans, from the decoder layer's input x (B, N, H)."""

    def __init__(self, hidden_size, n_orders, pooling, routing, binarize, dropout_r, reduction=2):
        super().__init__()
        self.pooling = pooling
        self.routing = routing
        self.binarize = binarize
        self.n_orders = n_orders
        if pooling == "attention":
            self.pool = AttFlatPool(hidden_size, dropout_r)
        elif pooling == "fc":
            self.pool = Linear(hidden_size, 1)
        self.mlp = nn.Sequential(
            Linear(hidden_size, hidden_size // reduction, bias_attr=False),
            nn.ReLU(),
            Linear(hidden_size // reduction, n_orders))
        self.last_alphas = None

    def pooled(self, x):
        if self.pooling == "avg":
            return cpu_ops.mean_tokens(x)
        if self.pooling == "attention":
            return self.pool(x, make_mask(x))
        scores = masked_fill(self.pool(x), make_mask(x).squeeze(1).squeeze(1).unsqueeze(2))
        return paddle.sum(x * F.softmax(scores, axis=1), axis=1)

    def forward(self, x, tau):
        logits = self.mlp(self.pooled(x))
        if self.routing == "soft":
            alphas = F.softmax(logits, axis=-1)
        else:
            logits = F.log_softmax(logits, axis=-1)
            if self.training:
                # Gumbel-softmax without straight-through: g = -log(E), E ~ Exp(1)
                logits = logits - paddle.empty_like(logits).exponential_().log()
            alphas = F.softmax(logits / tau, axis=-1)
        if self.binarize and not self.training:
            alphas = F.one_hot(alphas.argmax(axis=-1), self.n_orders).astype(alphas.dtype)
        if paddle.in_dynamic_mode():  # a Python attribute has no meaning in an exported static graph
            self.last_alphas = alphas.detach()
        return alphas


def span_softmax(scores, masks):
    """softmax(masked_fill(scores, mask)) for every order's mask: scores (B, heads, N, N), masks (B, L, N, N) bool
    -> (B, L, heads, N, N). Training on the CPU: cpu_ops.span_softmax (one shape, written-out backward)."""
    if cpu_ops.takes_span_softmax(scores):
        return cpu_ops.span_softmax(scores, masks.unsqueeze(2), MASK_FILL)
    scores = scores.unsqueeze(1)
    if not paddle.in_dynamic_mode():  # masked_fill's mask must broadcast to its input: one score map per order
        scores = paddle.tile(scores, [1, masks.shape[1], 1, 1, 1])
    return F.softmax(masked_fill(scores, masks.unsqueeze(2)), axis=-1)


class SARoutingBlock(MHAtt):
    """Image self-attention over several spans: one masked softmax per order, mixed with the routing weights."""

    def __init__(self, cfg):
        super().__init__(cfg.HIDDEN_SIZE, cfg.MULTI_HEAD, cfg.DROPOUT_R)
        self.routing_block = RoutingBlock(cfg.HIDDEN_SIZE, len(cfg.ORDERS), cfg.POOLING, cfg.ROUTING,
                                          bool(cfg.BINARIZE), cfg.DROPOUT_R)

    def forward(self, v, k, q, masks, tau):
        """masks: (B, L, N, N) bool, one mask per order."""
        alphas = self.routing_block(v, tau)
        v = self.split_heads(self.linear_v(v))
        k = self.split_heads(self.linear_k(k))
        q = self.split_heads(self.linear_q(q))
        scores = self.scores(k, q)                                                # (B, heads, N, N)
        att_maps = self.dropout(span_softmax(scores, masks))                      # (B, L, heads, N, N)
        # sum over l of alphas[b, l] * att_maps[b, l], as one batched matmul (B, 1, L) x (B, L, heads * N * N);
        # paddle.einsum's backward took ~3x as long
        att_map = paddle.matmul(alphas.unsqueeze(1), att_maps.flatten(2)).reshape(
            [0, self.multi_head, att_maps.shape[-2], att_maps.shape[-1]])
        return self.linear_merge(self.merge_heads(paddle.matmul(att_map, v)))


class Decoder(nn.Layer):
    """TRAR decoder layer: routed image self-attention, guided attention to the question, FFN (post-LN)."""

    def __init__(self, cfg):
        super().__init__()
        self.mhatt1 = SARoutingBlock(cfg)
        self.mhatt2 = MHAtt(cfg.HIDDEN_SIZE, cfg.MULTI_HEAD, cfg.DROPOUT_R)
        self.ffn = FFN(cfg.HIDDEN_SIZE, cfg.FF_SIZE, cfg.DROPOUT_R)
        self.dropout1 = Dropout(cfg.DROPOUT_R)
        self.norm1 = LayerNorm(cfg.HIDDEN_SIZE)
        self.dropout2 = Dropout(cfg.DROPOUT_R)
        self.norm2 = LayerNorm(cfg.HIDDEN_SIZE)
        self.dropout3 = Dropout(cfg.DROPOUT_R)
        self.norm3 = LayerNorm(cfg.HIDDEN_SIZE)

    def forward(self, x, y, x_masks, y_mask, tau):
        x = self.norm1(x + self.dropout1(self.mhatt1(x, x, x, x_masks, tau)))
        x = self.norm2(x + self.dropout2(self.mhatt2(y, y, x, y_mask)))
        return self.norm3(x + self.dropout3(self.ffn(x)))


def masks_per_order(x_mask, span_masks):
    """The padding mask (B, 1, 1, N) or each order's span mask (L, N, N) -> (B, L, N, N) bool."""
    span_masks = span_masks.astype("bool")   # held as int32 (see TRAR_ED)
    if not paddle.in_dynamic_mode():
        return paddle.logical_or(x_mask, span_masks)
    # on operands spread to one shape: Paddle's broadcasting logical_or took 0.48 ms at the demo size and 3.7 ms at
    # the default one, against 0.04 and 0.13 ms
    shape = [x_mask.shape[0]] + span_masks.shape
    return paddle.logical_or(x_mask.expand(shape), span_masks.expand(shape))


class TRAR_ED(nn.Layer):
    """All encoder layers on the question first, then every decoder layer attends to the final question features."""

    def __init__(self, cfg):
        super().__init__()
        check_trar_cfg(cfg)
        self.tau = float(cfg.TAU_MAX)
        self.enc_list = nn.LayerList(
            [SA(cfg.HIDDEN_SIZE, cfg.FF_SIZE, cfg.MULTI_HEAD, cfg.DROPOUT_R) for _ in range(cfg.LAYER)])
        self.dec_list = nn.LayerList([Decoder(cfg) for _ in range(cfg.LAYER)])
        # (L, N, N), 1 = outside the span; order 0 is all 0. Moves with the model, never saved. Held as int32 and
        # cast in masks_per_order: paddle2onnx cannot write a bool constant into an exported program.
        self.register_buffer("span_masks",
                             paddle.to_tensor(span_mask_stack(cfg.IMG_SCALE, cfg.ORDERS).astype("int32")),
                             persistable=False)

    def set_tau(self, tau):
        self.tau = float(tau)

    def forward(self, y, x, y_mask, x_mask):
        for enc in self.enc_list:
            y = enc(y, y_mask)
        x_masks = masks_per_order(x_mask, self.span_masks)
        for dec in self.dec_list:
            x = dec(x, y, x_masks, y_mask, self.tau)
        return y, x


class Net(NetBase):
    def __init__(self, cfg, pretrained_emb, token_size, answer_size):
        super().__init__()
        self.add_stem(cfg, pretrained_emb, token_size)
        self.backbone = TRAR_ED(cfg)
        self.add_head(cfg, answer_size)

    def set_tau(self, tau):
        self.backbone.set_tau(tau)

    def routing_alphas(self):
        """Routing weights (B, L) of the last forward, one tensor per decoder layer (None before any forward)."""
        return [dec.mhatt1.routing_block.last_alphas for dec in self.backbone.dec_list]

    def forward(self, frcn_feat, grid_feat, bbox_feat, ques_ix):
        lang_feat, lang_mask, img_feat, img_mask = self.embed(frcn_feat, grid_feat, bbox_feat, ques_ix)
        lang_feat, img_feat = self.backbone(lang_feat, img_feat, lang_mask, img_mask)
        return self.classify(lang_feat, lang_mask, img_feat, img_mask)
