"""ViT+TRAR (hsb1357173526/ViT-TRAR) in PaddlePaddle. Mirror of backends/torch/models/vit_trar.py.

Plain ViT (backends/paddle/models/vit.py) with every block's self-attention routed: per sample, soft routing weights
over ORDERS from the average of the layer-normed block input over all tokens (CLS included); one softmax per order
with the span mask on the patch-to-patch scores only (the CLS row and column are never masked; order 0 is global,
order k the Chebyshev-k window on the row-major patch grid; -1e9 fill); the maps mixed after the softmax.
With ORDERS [0] the logits equal plain ViT's bit for bit. Structured parameter names equal the original's.

Deliberate differences from the original: the span masks are built once (core.masks, numpy) as a non-persistable
buffer, not on every forward, and without the padding mask (a patch whose embedding sums to |.| = 0; images have no
padding); the routing weights of the last forward are kept for routing_alphas.
"""
import paddle
import paddle.nn.functional as F
from paddle import nn

from backends.paddle import cpu_ops
from backends.paddle.layers import MASK_FILL, Linear, masked_fill
from backends.paddle.models import vit
from core.masks import token_span_mask_stack


class SoftRoutingBlock(nn.Layer):
    """Routing weights (B, L) from the tokens (B, T, H): average over all tokens, MLP, softmax."""

    def __init__(self, in_channel, out_channel, reduction=2):
        super().__init__()
        self.mlp = nn.Sequential(
            Linear(in_channel, in_channel // reduction, bias_attr=False),
            nn.ReLU(),
            Linear(in_channel // reduction, out_channel))
        self.last_alphas = None

    def forward(self, x):
        alphas = F.softmax(self.mlp(x.mean(axis=1)), axis=-1)
        if paddle.in_dynamic_mode():  # a Python attribute has no meaning in an exported static graph
            self.last_alphas = alphas.detach()
        return alphas


def span_softmax(scores, masks):
    """softmax(masked_fill(scores, mask)) for every order's mask: scores (B, heads, T, T), masks (L, T, T) bool
    -> (B, L, heads, T, T). Training on the CPU: cpu_ops.span_softmax (one shape, written-out backward)."""
    masks = masks.unsqueeze(0).expand([scores.shape[0]] + masks.shape).unsqueeze(2)   # (B, L, 1, T, T)
    if cpu_ops.takes_span_softmax(scores):
        return cpu_ops.span_softmax(scores, masks, MASK_FILL)
    scores = scores.unsqueeze(1)
    if not paddle.in_dynamic_mode():  # masked_fill's mask must broadcast to its input: one score map per order
        scores = paddle.tile(scores, [1, masks.shape[1], 1, 1, 1])
    return F.softmax(masked_fill(scores, masks), axis=-1)


class TRAR_Attention(vit.Attention):
    """The block's self-attention over several spans, mixed with the routing weights after the softmax."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.routing_block = SoftRoutingBlock(cfg.HIDDEN_SIZE, len(cfg.ORDERS))

    def forward(self, hidden_states, span_masks=None):
        """span_masks: (L, T, T) bool, one per order, True = masked."""
        alphas = self.routing_block(hidden_states)
        scores, value = self.scores(hidden_states)
        att_maps = self.attn_dropout(span_softmax(scores, span_masks))           # (B, L, heads, T, T)
        # sum over l of alphas[b, l] * att_maps[b, l], as one batched matmul (B, 1, L) x (B, L, heads * T * T)
        att_map = paddle.matmul(alphas.unsqueeze(1), att_maps.flatten(2)).reshape(
            [0, self.num_attention_heads, att_maps.shape[-2], att_maps.shape[-1]])
        return self.merge(att_map, value)


class Net(vit.Net):
    """The original's VisionTransformer with TRAR_Attention in every block."""

    attention = TRAR_Attention

    def __init__(self, cfg, num_classes):
        super().__init__(cfg, num_classes)
        # (L, T, T), 1 = outside the span; CLS row and column open. Moves with the model, never saved. Held as int32
        # and cast in span_masks: paddle2onnx cannot write a bool constant into an exported program.
        self.register_buffer("img_masks",
                             paddle.to_tensor(token_span_mask_stack(cfg.IMG_SCALE, cfg.ORDERS).astype("int32")),
                             persistable=False)

    def span_masks(self):
        return self.img_masks.astype("bool")

    def routing_alphas(self):
        """Routing weights (B, L) of the last forward, one tensor per block (None before any forward)."""
        return [block.attn.routing_block.last_alphas for block in self.transformer.encoder.layer]
