"""LSAT (Shen et al., Applied Intelligence 2023) in PyTorch. Mirrored in backends/paddle/models/lsat.py.

A reconstruction from the paper, not a port of running code (the public code never runs a local attention; reference
lsat.md section 2): MCAN's encoder-decoder (backends/torch/models/mcan.py) on the image grid, where every decoder
layer's image self-attention (mhatt1) is local windowed attention: the window mask of core.local_windows, OR-ed with
the padding mask, on the dense scores. Optional rotary positions on that attention's queries and keys (LSAT_ROTARY).
Parameter names and shapes are MCAN's, so an MCAN checkpoint on the same grid loads with strict=True; the masks and
rotary tables are non-persistent buffers, built once.
"""
import torch

from backends.torch.layers import MHAtt
from backends.torch.models import mcan
from backends.torch.models.mcan import MCA_ED
from core.local_windows import rotary_tables, window_mask


def image_tokens(cfg):
    return cfg.IMG_SCALE * cfg.IMG_SCALE


def rotate_half(x):
    """cat(-x2, x1) of the two halves of the last axis (not interleaved)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class LocalMHAtt(MHAtt):
    """MCAN's MHAtt (same parameters); its mask arrives with the window mask in it. With rotary positions, the
    queries and keys of each head are rotated by their token's angle before the scores."""

    def __init__(self, cfg):
        super().__init__(cfg.HIDDEN_SIZE, cfg.MULTI_HEAD, cfg.DROPOUT_R)
        self.rotary = bool(cfg.LSAT_ROTARY)
        if self.rotary:
            cos, sin = rotary_tables(image_tokens(cfg), cfg.HIDDEN_SIZE // cfg.MULTI_HEAD)
            self.register_buffer("rotary_cos", torch.from_numpy(cos), persistent=False)
            self.register_buffer("rotary_sin", torch.from_numpy(sin), persistent=False)

    def rotate(self, x):
        """(B, heads, N, head size) -> x * cos + rotate_half(x) * sin, per token."""
        return x * self.rotary_cos.to(x.dtype) + rotate_half(x) * self.rotary_sin.to(x.dtype)

    def scores(self, k, q):
        if self.rotary:
            k, q = self.rotate(k), self.rotate(q)
        return super().scores(k, q)


class LSAT_ED(MCA_ED):
    """MCAN's encoder-decoder with local image self-attention in every decoder layer. An SGA layer reads its image
    mask in mhatt1 only (mhatt2 takes the question's), so the window mask goes in through that argument."""

    def __init__(self, cfg):
        super().__init__(cfg)
        for dec in self.dec_list:
            dec.mhatt1 = LocalMHAtt(cfg)       # in MHAtt's place: the same parameter names and order
        mask = window_mask(image_tokens(cfg), cfg.LSAT_WINDOW, cfg.LSAT_LOOK_BACKWARD, cfg.LSAT_LOOK_FORWARD)
        # (N, N), True = outside the query's windows. Moves with the model, never saved.
        self.register_buffer("window_mask", torch.from_numpy(mask), persistent=False)

    def forward(self, y, x, y_mask, x_mask):
        return super().forward(y, x, y_mask, local_mask(x_mask, self.window_mask))


def local_mask(x_mask, window):
    """The padding mask (B, 1, 1, N) OR the window mask (N, N) -> (B, 1, N, N) bool."""
    return torch.logical_or(x_mask, window)


class Net(mcan.Net):
    """MCAN's Net (stem, backbone, head; the same parameters) with LSAT's backbone."""

    backbone_class = LSAT_ED
