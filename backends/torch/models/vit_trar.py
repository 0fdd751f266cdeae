"""ViT+TRAR (hsb1357173526/ViT-TRAR) in PyTorch. Mirrored in backends/paddle/models/vit_trar.py.

Plain ViT (backends/torch/models/vit.py) with every block's self-attention routed: per sample, soft routing weights
over ORDERS from the average of the layer-normed block input over all tokens (CLS included); one softmax per order
with the span mask on the patch-to-patch scores only (the CLS row and column are never masked; order 0 is global,
order k the Chebyshev-k window on the row-major patch grid; -1e9 fill); the maps mixed after the softmax.
With ORDERS [0] the logits equal plain ViT's bit for bit. Parameter names equal the original's (the routing head is
attn.routing_block.mlp.0 / .2 of each block).

Deliberate differences from the original: the span masks are built once (core.masks, numpy) as a non-persistent
buffer, not on every forward, and without the padding mask (a patch whose embedding sums to |.| = 0; images have no
padding); the routing weights of the last forward are kept for routing_alphas.
"""
import torch
import torch.nn.functional as F
from torch import nn

from backends.torch import cpu_ops
from backends.torch.layers import MASK_FILL, Linear, masked_fill
from backends.torch.models import vit
from core.masks import token_span_mask_stack


class SoftRoutingBlock(nn.Module):
    """Routing weights (B, L) from the tokens (B, T, H): average over all tokens, MLP, softmax."""

    def __init__(self, in_channel, out_channel, reduction=2):
        super().__init__()
        self.mlp = nn.Sequential(
            Linear(in_channel, in_channel // reduction, bias=False),
            nn.ReLU(),
            Linear(in_channel // reduction, out_channel))
        self.last_alphas = None

    def forward(self, x):
        alphas = F.softmax(self.mlp(x.mean(dim=1)), dim=-1)
        self.last_alphas = alphas.detach()
        return alphas


def span_softmax(scores, masks):
    """softmax(masked_fill(scores, mask)) for every order's mask: scores (B, heads, T, T), masks (L, T, T) bool
    -> (B, L, heads, T, T). Training on the CPU: cpu_ops.span_softmax (one pass forward, written-out backward)."""
    if cpu_ops.takes_span_softmax(scores):
        return cpu_ops.span_softmax(scores, masks.unsqueeze(0).unsqueeze(2), MASK_FILL)   # masks (1, L, 1, T, T)
    return F.softmax(masked_fill(scores.unsqueeze(1), masks.unsqueeze(1)), dim=-1)


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
        att_map = torch.matmul(alphas.unsqueeze(1), att_maps.flatten(2)).reshape(att_maps[:, 0].shape)
        return self.merge(att_map, value)


class Net(vit.Net):
    """The original's VisionTransformer with TRAR_Attention in every block."""

    attention = TRAR_Attention

    def __init__(self, cfg, num_classes):
        super().__init__(cfg, num_classes)
        # (L, T, T), True = outside the span; CLS row and column open. Moves with the model, never saved.
        self.register_buffer("img_masks", torch.from_numpy(token_span_mask_stack(cfg.IMG_SCALE, cfg.ORDERS)),
                             persistent=False)

    def span_masks(self):
        return self.img_masks

    def routing_alphas(self):
        """Routing weights (B, L) of the last forward, one tensor per block (None before any forward)."""
        return [block.attn.routing_block.last_alphas for block in self.transformer.encoder.layer]
