"""ViT (rentainhe/ViT.pytorch, the jeonsworld model) in PyTorch. Mirrored in backends/paddle/models/vit.py.

Net (the original's VisionTransformer) = transformer (patch embedding conv, CLS token, learned position
embeddings; pre-LN blocks of multi-head self-attention and a GELU MLP; encoder_norm) and ``head`` on the CLS token.
Parameter names equal the original's (transformer.embeddings.*, transformer.encoder.layer.N.*, head), so its
state dicts load with strict=True. backends/torch/models/vit_trar.py swaps every block's attention for TRAR's.

Deliberate differences from the original: forward returns the logits only (the original returns (logits, attention
weights), or the loss when given labels); no hybrid (ResNet) stem.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from backends.torch import cpu_ops
from backends.torch.layers import Dropout, Linear

LAYER_NORM_EPS = 1e-6   # the original's nn.LayerNorm(eps=1e-6) (not openvqa's LayerNorm of layers.py)


class StandardLayerNorm(nn.LayerNorm):
    """nn.LayerNorm (weight and bias, biased variance), as the original's; its CPU kernel is chosen in
    cpu_ops.standard_layer_norm."""

    def forward(self, x):
        return cpu_ops.standard_layer_norm(x, self.weight, self.bias, self.eps)


def layer_norm(hidden_size):
    return StandardLayerNorm(hidden_size, eps=LAYER_NORM_EPS)


class Attention(nn.Module):
    """Multi-head self-attention over all tokens (scale 1 / sqrt(head size), no mask)."""

    def __init__(self, cfg):
        super().__init__()
        self.num_attention_heads = cfg.MULTI_HEAD
        self.attention_head_size = cfg.HIDDEN_SIZE // cfg.MULTI_HEAD
        self.all_head_size = self.num_attention_heads * self.attention_head_size
        self.query = Linear(cfg.HIDDEN_SIZE, self.all_head_size)
        self.key = Linear(cfg.HIDDEN_SIZE, self.all_head_size)
        self.value = Linear(cfg.HIDDEN_SIZE, self.all_head_size)
        self.out = Linear(cfg.HIDDEN_SIZE, cfg.HIDDEN_SIZE)
        self.attn_dropout = Dropout(cfg.ATTN_DROPOUT_R)
        self.proj_dropout = Dropout(cfg.ATTN_DROPOUT_R)

    def transpose_for_scores(self, x):
        """(B, T, H) -> (B, heads, T, H / heads)."""
        return x.reshape(x.shape[0], -1, self.num_attention_heads, self.attention_head_size).transpose(1, 2)

    def scores(self, hidden_states):
        """(query-key scores (B, heads, T, T), values (B, heads, T, H / heads))."""
        query = self.transpose_for_scores(self.query(hidden_states))
        key = self.transpose_for_scores(self.key(hidden_states))
        value = self.transpose_for_scores(self.value(hidden_states))
        return torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(self.attention_head_size), value

    def merge(self, probs, value):
        """Attention probabilities (B, heads, T, T) applied to the values, heads merged, projected."""
        context = torch.matmul(probs, value).transpose(1, 2)
        context = context.reshape(context.shape[0], -1, self.all_head_size)
        return self.proj_dropout(self.out(context))

    def forward(self, hidden_states, span_masks=None):
        """span_masks: unused (plain ViT attends globally); the routed attention of vit_trar reads them."""
        scores, value = self.scores(hidden_states)
        return self.merge(self.attn_dropout(F.softmax(scores, dim=-1)), value)


class Mlp(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.fc1 = Linear(cfg.HIDDEN_SIZE, cfg.FF_SIZE)
        self.fc2 = Linear(cfg.FF_SIZE, cfg.HIDDEN_SIZE)
        self.dropout = Dropout(cfg.DROPOUT_R)
        self._init_weights()

    def _init_weights(self):
        """The original's: xavier-uniform weights, N(0, 1e-6) biases."""
        nn.init.xavier_uniform_(self.fc1.weight)
        nn.init.xavier_uniform_(self.fc2.weight)
        nn.init.normal_(self.fc1.bias, std=1e-6)
        nn.init.normal_(self.fc2.bias, std=1e-6)

    def forward(self, x):
        x = self.dropout(F.gelu(self.fc1(x)))      # exact (erf) GELU
        return self.dropout(self.fc2(x))


class Embeddings(nn.Module):
    """Patches (row-major: token 1 + r * s + c is patch (r, c)), the CLS token first, plus position embeddings."""

    def __init__(self, cfg):
        super().__init__()
        n_patches = (cfg.IMG_SIZE // cfg.PATCH_SIZE) ** 2
        self.patch_embeddings = nn.Conv2d(3, cfg.HIDDEN_SIZE, kernel_size=cfg.PATCH_SIZE, stride=cfg.PATCH_SIZE)
        self.position_embeddings = nn.Parameter(torch.zeros(1, n_patches + 1, cfg.HIDDEN_SIZE))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.HIDDEN_SIZE))
        self.dropout = Dropout(cfg.DROPOUT_R)

    def forward(self, x):
        x = self.patch_embeddings(x).flatten(2).transpose(-1, -2)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        return self.dropout(x + self.position_embeddings)


class Block(nn.Module):
    """Pre-LN: x + attn(LN(x)), then x + ffn(LN(x)); no residual dropout."""

    def __init__(self, cfg, attention):
        super().__init__()
        self.hidden_size = cfg.HIDDEN_SIZE
        self.attention_norm = layer_norm(cfg.HIDDEN_SIZE)
        self.ffn_norm = layer_norm(cfg.HIDDEN_SIZE)
        self.ffn = Mlp(cfg)
        self.attn = attention(cfg)

    def forward(self, x, span_masks=None):
        x = x + self.attn(self.attention_norm(x), span_masks)
        return x + self.ffn(self.ffn_norm(x))


class Encoder(nn.Module):
    def __init__(self, cfg, attention):
        super().__init__()
        self.layer = nn.ModuleList([Block(cfg, attention) for _ in range(cfg.LAYER)])
        self.encoder_norm = layer_norm(cfg.HIDDEN_SIZE)

    def forward(self, hidden_states, span_masks=None):
        for block in self.layer:
            hidden_states = block(hidden_states, span_masks)
        return self.encoder_norm(hidden_states)


class Transformer(nn.Module):
    def __init__(self, cfg, attention):
        super().__init__()
        self.embeddings = Embeddings(cfg)
        self.encoder = Encoder(cfg, attention)

    def forward(self, image, span_masks=None):
        return self.encoder(self.embeddings(image), span_masks)


class Net(nn.Module):
    """The original's VisionTransformer: logits (B, num_classes) of the CLS token from images (B, 3, S, S)."""

    attention = Attention

    def __init__(self, cfg, num_classes):
        super().__init__()
        self.num_classes = num_classes
        self.transformer = Transformer(cfg, self.attention)
        self.head = Linear(cfg.HIDDEN_SIZE, num_classes)

    def span_masks(self):
        """The routed attention's masks (vit_trar); plain ViT has none."""
        return None

    def forward(self, image):
        return self.head(self.transformer(image, self.span_masks())[:, 0])

    def set_tau(self, tau):
        """Soft routing has no temperature; every Net takes the same calls."""

    def routing_alphas(self):
        return []
