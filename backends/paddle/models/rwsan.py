"""RWSAN (Qin, Hu, Zhuang, IEEE TMM; BrightQin/RWSAN model/model.py) in PaddlePaddle. Mirror of
backends/torch/models/rwsan.py.

MCAN's encoder-decoder with low-rank attention (RWSA: queries and keys projected to a per-head midsize r and scaled by
1/sqrt(r); values and output full width) and weight sharing: one SA block (MCAN's, with RWSA) runs three times on the
question with the block input re-injected through norm1/norm2 (SRWSA), one SGA block (MCAN's, with two RWSA) three
times on the image regions with one
re-injection and an outer residual (SGRWSA); each is repeated SRWSA_LAYER / SGRWSA_LAYER times with the same weights.
Structured parameter names equal the original's (RWSA_layer.srwsa.denceenc1..., img_feat_linear, attflat_img, ...;
Linear weights are [in, out]).
The original's mask fill is -5e4 (for float16); MASK_FILL's -1e9 gives the same float32 numbers (softmax weight 0 either
way; uniform weights for a fully masked row either way), and in half precision layers.masked_fill clips to the dtype.
"""
import math

import paddle
import paddle.nn.functional as F
from paddle import nn

from backends.paddle.layers import LSTM, SA, Dropout, LayerNorm, Linear, NetBase, make_embedding, make_mask, masked_fill
from backends.paddle.models.mcan import SGA


class RWSA(nn.Layer):
    """Low-rank multi-head attention: q/k of multi_head x midsize, v and the merge of hidden_size."""

    def __init__(self, hidden_size, multi_head, midsize, dropout_r):
        super().__init__()
        if hidden_size % multi_head:
            raise ValueError(f"HIDDEN_SIZE {hidden_size} must be divisible by MULTI_HEAD {multi_head}")
        self.hidden_size = hidden_size
        self.multi_head = multi_head
        self.linear_v = Linear(hidden_size, hidden_size)
        self.linear_k = Linear(hidden_size, multi_head * midsize)
        self.linear_q = Linear(hidden_size, multi_head * midsize)
        self.linear_merge = Linear(hidden_size, hidden_size)
        self.dropout = Dropout(dropout_r)

    def split_heads(self, x):
        """(B, n, heads * w) -> (B, heads, n, w)."""
        # 0 keeps the batch size as is, also when it is unknown (-1) in an exported static graph
        return x.reshape([0, -1, self.multi_head, x.shape[-1] // self.multi_head]).transpose([0, 2, 1, 3])

    def forward(self, v, k, q, mask):
        v = self.split_heads(self.linear_v(v))
        k = self.split_heads(self.linear_k(k))
        q = self.split_heads(self.linear_q(q))
        scores = paddle.matmul(q, k, transpose_y=True) / math.sqrt(q.shape[-1])   # 1/sqrt(midsize)
        scores = masked_fill(scores, mask)
        att_map = self.dropout(F.softmax(scores, axis=-1))
        out = paddle.matmul(att_map, v).transpose([0, 2, 1, 3]).reshape([0, -1, self.hidden_size])
        return self.linear_merge(out)


class SRWSA(nn.Layer):
    """One SA three times; the block input re-injected before the 2nd and 3rd pass, no outer residual."""

    def __init__(self, cfg):
        super().__init__()
        self.denceenc1 = SA(cfg.HIDDEN_SIZE, cfg.FF_SIZE, cfg.MULTI_HEAD, cfg.DROPOUT_R,   # sic, the original's name
                            mhatt=RWSA(cfg.HIDDEN_SIZE, cfg.MULTI_HEAD, cfg.SRWSA_MIDSIZE, cfg.DROPOUT_R))
        self.norm1 = LayerNorm(cfg.HIDDEN_SIZE)
        self.norm2 = LayerNorm(cfg.HIDDEN_SIZE)

    def forward(self, x, x_mask):
        x1 = self.denceenc1(x, x_mask)
        x2 = self.denceenc1(self.norm1(x1 + x), x_mask)
        return self.denceenc1(self.norm2(x2 + x), x_mask)


class SGRWSA(nn.Layer):
    """One SGA three times; the block input re-injected before the 2nd pass only, and an outer residual (no norm2)."""

    def __init__(self, cfg):
        super().__init__()
        self.dec1 = SGA(cfg, RWSA(cfg.HIDDEN_SIZE, cfg.MULTI_HEAD, cfg.SGRWSA_SA_MIDSIZE, cfg.DROPOUT_R),
                        RWSA(cfg.HIDDEN_SIZE, cfg.MULTI_HEAD, cfg.SGRWSA_GA_MIDSIZE, cfg.DROPOUT_R))
        self.norm1 = LayerNorm(cfg.HIDDEN_SIZE)
        self.norm3 = LayerNorm(cfg.HIDDEN_SIZE)

    def forward(self, x, y, x_mask, y_mask):
        y1 = self.dec1(y, x, y_mask, x_mask)   # MCAN's SGA: the image (y here) first
        y2 = self.dec1(self.norm1(y1 + y), x, y_mask, x_mask)
        y3 = self.dec1(y2, x, y_mask, x_mask)
        return self.norm3(y3 + y)


class RWSA_Layer(nn.Layer):
    """The shared SRWSA SRWSA_LAYER times on the question, then the shared SGRWSA SGRWSA_LAYER times on the image."""

    def __init__(self, cfg):
        super().__init__()
        self.srwsa_layer = cfg.SRWSA_LAYER
        self.sgrwsa_layer = cfg.SGRWSA_LAYER
        self.srwsa = SRWSA(cfg)
        self.sgrwsa = SGRWSA(cfg)

    def forward(self, x, y, x_mask, y_mask):
        for _ in range(self.srwsa_layer):
            x = self.srwsa(x, x_mask)
        for _ in range(self.sgrwsa_layer):
            y = self.sgrwsa(x, y, x_mask, y_mask)
        return x, y


class Net(NetBase):
    def __init__(self, cfg, pretrained_emb, token_size, answer_size):
        super().__init__()
        self.embedding = make_embedding(token_size, cfg.WORD_EMBED_SIZE, pretrained_emb)
        self.lstm = LSTM(input_size=cfg.WORD_EMBED_SIZE, hidden_size=cfg.HIDDEN_SIZE, num_layers=1, time_major=False)
        self.img_feat_linear = Linear(cfg.FEAT_SIZE["vqa"]["FRCN_FEAT_SIZE"][1], cfg.HIDDEN_SIZE)
        self.RWSA_layer = RWSA_Layer(cfg)
        self.add_head(cfg, answer_size)

    def forward(self, frcn_feat, grid_feat, bbox_feat, ques_ix):
        lang_mask = make_mask(ques_ix.unsqueeze(2))
        img_mask = make_mask(frcn_feat)
        lang_feat, _ = self.lstm(self.embedding(ques_ix))
        img_feat = self.img_feat_linear(frcn_feat)   # no activation: padded rows become the bias, kept out by the mask
        lang_feat, img_feat = self.RWSA_layer(lang_feat, img_feat, lang_mask, img_mask)
        return self.classify(lang_feat, lang_mask, img_feat, img_mask)
