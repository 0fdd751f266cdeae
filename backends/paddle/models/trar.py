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
from paddle.autograd import PyLayer

from backends.paddle.layers import (FFN, MASK_FILL, SA, AttFlat, Dropout, LayerNorm, Linear, MHAtt, NetBase,
                                   cached_ones, make_mask, masked_fill, row_sums, spread)
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
            return x.mean(axis=1)
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


def _repeat(x, times):
    """(B, ...) -> (B, times, ...): x copied ``times`` times after the batch axis, by one batched matmul with a column
    of ones (exact; on the CPU ~2x faster than paddle.tile, and no broadcasting op later)."""
    batch = x.shape[0]
    out = paddle.matmul(cached_ones((times, 1), x.dtype), x.reshape([batch, 1, -1]))
    return out.reshape([batch, times] + x.shape[1:])


class _SpanSoftmax(PyLayer):
    """softmax(masked_fill(scores, masks)) for every order at once: scores (B, heads, N, N), masks (B, L, 1, N, N)
    -> (B, L, heads, N, N); the CPU training path of SARoutingBlock.

    The masked fill is x * keep + fill with keep = 1, fill = 0 where kept and keep = 0, fill = MASK_FILL where masked:
    exactly masked_fill's values for finite scores (x * 1 + 0 = x, x * 0 + MASK_FILL = MASK_FILL), on operands of one
    shape (Paddle's CPU where broadcasting the scores over the orders and the mask over the heads took 4x as long).
    The backward is autograd's, written out: a masked entry has probability exactly 0 (exp(-1e9 - max) underflows),
    so the softmax gradient is already 0 there and the masked fill's gradient (zero at masked entries) only matters
    in rows whose every key is masked, which get it explicitly. Row sums and the sum over the L orders are matmuls
    with ones (paddle's last-axis reduction and expand gradient run single-threaded, 2-6x slower).
    """

    @staticmethod
    def forward(ctx, scores, masks):
        batch, heads, n = scores.shape[0], scores.shape[1], scores.shape[-1]
        orders = masks.shape[1]
        fill = masks.astype(scores.dtype).reshape([batch * orders, n, n])
        keep = _repeat(1.0 - fill, heads).reshape([batch, orders, heads, n, n])
        fill = _repeat(fill * MASK_FILL, heads).reshape([batch, orders, heads, n, n])
        probs = F.softmax(_repeat(scores, orders) * keep + fill, axis=-1)
        dead_rows = masks.all(-1, keepdim=True)                                  # (B, L, 1, N, 1)
        ctx.any_dead = bool(dead_rows.any())
        ctx.save_for_backward(probs, dead_rows)
        return probs

    @staticmethod
    def backward(ctx, grad):
        probs, dead_rows = ctx.saved_tensor()
        n = probs.shape[-1]
        flat_p, flat_g = probs.reshape([-1, n]), grad.reshape([-1, n])
        grad_scores = (flat_p * (flat_g - spread(row_sums(flat_p * flat_g), n))).reshape(probs.shape)
        if ctx.any_dead:
            grad_scores = paddle.where(dead_rows, paddle.zeros([], grad_scores.dtype), grad_scores)
        batch, orders = grad_scores.shape[:2]
        summed = paddle.matmul(cached_ones((1, orders), grad_scores.dtype),
                               grad_scores.reshape([batch, orders, -1]))
        return summed.reshape([batch] + grad_scores.shape[2:]), None


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
        if paddle.in_dynamic_mode() and paddle.is_grad_enabled() and not scores.stop_gradient \
                and scores.place.is_cpu_place():
            att_maps = _SpanSoftmax.apply(scores, masks.unsqueeze(2))
        else:
            scores = scores.unsqueeze(1)
            if not paddle.in_dynamic_mode():  # masked_fill's mask must broadcast to its input: one score map per order
                scores = paddle.tile(scores, [1, masks.shape[1], 1, 1, 1])
            att_maps = F.softmax(masked_fill(scores, masks.unsqueeze(2)), axis=-1)
        att_maps = self.dropout(att_maps)                                         # (B, L, heads, N, N)
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
        # cast in forward: paddle2onnx cannot write a bool constant into an exported program.
        self.register_buffer("span_masks",
                             paddle.to_tensor(span_mask_stack(cfg.IMG_SCALE, cfg.ORDERS).astype("int32")),
                             persistable=False)

    def set_tau(self, tau):
        self.tau = float(tau)

    def forward(self, y, x, y_mask, x_mask):
        for enc in self.enc_list:
            y = enc(y, y_mask)
        span_masks = self.span_masks.astype("bool")
        if paddle.in_dynamic_mode():
            # (B,1,1,N) | (L,N,N) -> (B,L,N,N) on operands spread to one shape: Paddle's broadcasting logical_or
            # took 0.48 ms at the demo size and 3.7 ms at the default one, against 0.04 and 0.13 ms
            shape = [x_mask.shape[0]] + span_masks.shape
            x_masks = paddle.logical_or(x_mask.expand(shape), span_masks.expand(shape))
        else:
            x_masks = paddle.logical_or(x_mask, span_masks)
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
