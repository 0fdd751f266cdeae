"""LSAT (Shen et al., Applied Intelligence 2023) in PaddlePaddle. Mirror of backends/torch/models/lsat.py.

A reconstruction from the paper, not a port of running code (the public code never runs a local attention; reference
lsat.md section 2): MCAN's encoder-decoder (backends/paddle/models/mcan.py) on the image grid, where every decoder
layer's image self-attention (mhatt1) is local windowed attention: the window mask of core.local_windows, OR-ed with
the padding mask, on the dense scores. Optional rotary positions on that attention's queries and keys (LSAT_ROTARY).
Structured parameter names and shapes are MCAN's (Linear weights are [in, out]); the masks and rotary tables are
non-persistable buffers, built once.
"""
import paddle

from backends.paddle.layers import MHAtt
from backends.paddle.models import mcan
from backends.paddle.models.mcan import MCA_ED
from core.local_windows import rotary_tables, window_mask


def image_tokens(cfg):
    return cfg.IMG_SCALE * cfg.IMG_SCALE


def rotate_half(x):
    """cat(-x2, x1) of the two halves of the last axis (not interleaved)."""
    x1, x2 = x.chunk(2, axis=-1)
    return paddle.concat((-x2, x1), axis=-1)


class LocalMHAtt(MHAtt):
    """MCAN's MHAtt (same parameters); its mask arrives with the window mask in it. With rotary positions, the
    queries and keys of each head are rotated by their token's angle before the scores."""

    def __init__(self, cfg):
        super().__init__(cfg.HIDDEN_SIZE, cfg.MULTI_HEAD, cfg.DROPOUT_R)
        self.rotary = bool(cfg.LSAT_ROTARY)
        if self.rotary:
            cos, sin = rotary_tables(image_tokens(cfg), cfg.HIDDEN_SIZE // cfg.MULTI_HEAD)
            self.register_buffer("rotary_cos", paddle.to_tensor(cos), persistable=False)
            self.register_buffer("rotary_sin", paddle.to_tensor(sin), persistable=False)

    def rotate(self, x):
        """(B, heads, N, head size) -> x * cos + rotate_half(x) * sin, per token."""
        return x * self.rotary_cos.astype(x.dtype) + rotate_half(x) * self.rotary_sin.astype(x.dtype)

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
        # (N, N), 1 = outside the query's windows. Moves with the model, never saved. Held as int32 and cast in
        # local_mask: paddle2onnx cannot write a bool constant into an exported program.
        self.register_buffer("window_mask", paddle.to_tensor(mask.astype("int32")), persistable=False)

    def forward(self, y, x, y_mask, x_mask):
        return super().forward(y, x, y_mask, local_mask(x_mask, self.window_mask))


def local_mask(x_mask, window):
    """The padding mask (B, 1, 1, N) OR the window mask (N, N) -> (B, 1, N, N) bool."""
    return paddle.logical_or(x_mask, window.astype("bool"))


class Net(mcan.Net):
    """MCAN's Net (stem, backbone, head; the same parameters) with LSAT's backbone."""

    backbone_class = LSAT_ED
