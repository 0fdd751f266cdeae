"""MMNasNet (openvqa models/mmnasnet) in PaddlePaddle, small and large by config. Mirror of
backends/torch/models/mmnasnet.py.

A searched encoder-decoder: cfg.ARCH['enc'] ops run on the question, then cfg.ARCH['dec'] ops on the image regions,
each decoder op seeing the final question features. Ops are post-LN residual blocks: SA (self-attention), GA (image
queries attend to the question), RSA (self-attention biased by the relative box geometry) and FFN. Parameter names
equal openvqa's (backbone.enc_list.{i}.mhatt/mlp/norm, linear_rel, ...).
"""
import paddle
import paddle.nn.functional as F
from paddle import nn

from backends.paddle import layers
from backends.paddle.layers import Dropout, LayerNorm, Linear, MHAtt, NetBase
from core.geometry import DELTA_MIN

REL_LOG_MIN = 1e-6  # ReLU'd relation weights are clamped to this before the log


def relation_geometry(boxes):
    """(B, N, 4) pixel boxes -> (B, N, N, 4): the formula of core.geometry.relation_geometry in paddle ops."""
    x1, y1, x2, y2 = (boxes[..., k:k + 1] for k in range(4))
    cx = (x1 + x2) * 0.5
    cy = (y1 + y2) * 0.5
    w = (x2 - x1) + 1.0
    h = (y2 - y1) + 1.0
    g0 = paddle.log(paddle.clip(paddle.abs((cx - cx.transpose([0, 2, 1])) / w), min=DELTA_MIN))
    g1 = paddle.log(paddle.clip(paddle.abs((cy - cy.transpose([0, 2, 1])) / h), min=DELTA_MIN))
    g2 = paddle.log(w / w.transpose([0, 2, 1]))
    g3 = paddle.log(h / h.transpose([0, 2, 1]))
    return paddle.stack((g0, g1, g2, g3), axis=-1)


class RelMHAtt(MHAtt):
    """MHAtt with HIDDEN_SIZE / REL_HBASE heads whose scores get log(clamp(ReLU(linear_r(rela)), 1e-6))."""

    def __init__(self, cfg):
        if cfg.HIDDEN_SIZE % cfg.REL_HBASE:
            raise ValueError(f"HIDDEN_SIZE {cfg.HIDDEN_SIZE} must be divisible by REL_HBASE {cfg.REL_HBASE}")
        super().__init__(cfg.HIDDEN_SIZE, cfg.HIDDEN_SIZE // cfg.REL_HBASE, cfg.DROPOUT_R)
        self.linear_r = Linear(cfg.REL_SIZE, self.multi_head)
        self.relu = nn.ReLU()

    def forward(self, v, k, q, mask, rela):
        v = self.split_heads(self.linear_v(v))
        k = self.split_heads(self.linear_k(k))
        q = self.split_heads(self.linear_q(q))
        r = self.relu(self.linear_r(rela)).transpose([0, 3, 1, 2])  # (B, heads, N_q, N_k)
        scores = paddle.log(paddle.clip(r, min=REL_LOG_MIN)) + self.scores(k, q)
        if mask is not None:
            scores = layers.masked_fill(scores, mask)
        att_map = self.dropout(F.softmax(scores, axis=-1))
        return self.linear_merge(self.merge_heads(paddle.matmul(att_map, v)))


# Every op takes (x, y, x_mask, y_mask, rela) and ignores what it does not need (the encoder passes None for y,
# y_mask and rela).
class SA(nn.Layer):
    def __init__(self, cfg):
        super().__init__()
        self.mhatt = MHAtt(cfg.HIDDEN_SIZE, cfg.MULTI_HEAD, cfg.DROPOUT_R)
        self.dropout = Dropout(cfg.DROPOUT_R)
        self.norm = LayerNorm(cfg.HIDDEN_SIZE)

    def forward(self, x, y, x_mask, y_mask, rela):
        return self.norm(x + self.dropout(self.mhatt(x, x, x, x_mask)))


class GA(SA):
    """SA's parameters; the image queries attend to the question."""

    def forward(self, x, y, x_mask, y_mask, rela):
        return self.norm(x + self.dropout(self.mhatt(y, y, x, y_mask)))


class RSA(nn.Layer):
    def __init__(self, cfg):
        super().__init__()
        self.mhatt = RelMHAtt(cfg)
        self.dropout = Dropout(cfg.DROPOUT_R)
        self.norm = LayerNorm(cfg.HIDDEN_SIZE)

    def forward(self, x, y, x_mask, y_mask, rela):
        return self.norm(x + self.dropout(self.mhatt(x, x, x, x_mask, rela)))


class FFN(layers.FFN):
    """The shared FFN (mlp, inner size 4 * HIDDEN_SIZE; FF_SIZE is unused) with its residual and norm inside."""

    def __init__(self, cfg):
        super().__init__(cfg.HIDDEN_SIZE, cfg.HIDDEN_SIZE * 4, cfg.DROPOUT_R)
        self.dropout = Dropout(cfg.DROPOUT_R)
        self.norm = LayerNorm(cfg.HIDDEN_SIZE)

    def forward(self, x, y, x_mask, y_mask, rela):
        return self.norm(x + self.dropout(self.mlp(x)))


OPS = {"SA": SA, "GA": GA, "RSA": RSA, "FFN": FFN}
# The encoder runs before the image exists (no y, no geometry), so only these ops can be in it.
ENC_OPS = ("SA", "FFN")


def check_arch(arch):
    """cfg.ARCH -> (enc op names, dec op names); a ValueError naming ARCH and the bad entry otherwise."""
    if not isinstance(arch, dict) or set(arch) != {"enc", "dec"}:
        raise ValueError(f"ARCH: expected a mapping {{enc: [...], dec: [...]}}, got {arch!r}")
    for part, allowed in (("enc", ENC_OPS), ("dec", tuple(OPS))):
        ops = arch[part]
        if not isinstance(ops, (list, tuple)) or not ops:
            raise ValueError(f"ARCH.{part}: expected a non-empty list of op names, got {ops!r}")
        for op in ops:
            if op not in allowed:
                raise ValueError(f"ARCH.{part}: unknown op {op!r}; expected one of {', '.join(allowed)}")
    return list(arch["enc"]), list(arch["dec"])


class NAS_ED(nn.Layer):
    def __init__(self, cfg):
        super().__init__()
        enc, dec = check_arch(cfg.ARCH)
        self.enc_list = nn.LayerList([OPS[op](cfg) for op in enc])
        self.dec_list = nn.LayerList([OPS[op](cfg) for op in dec])

    def forward(self, y, x, y_mask, x_mask, rela):
        for enc in self.enc_list:
            y = enc(y, None, y_mask, None, None)
        for dec in self.dec_list:
            x = dec(x, y, x_mask, y_mask, rela)
        return y, x


class Net(NetBase):
    def __init__(self, cfg, pretrained_emb, token_size, answer_size):
        super().__init__()
        if cfg.DATA_FORMAT != "vqa" or cfg.USE_BBOX_FEAT:
            raise ValueError("MMNasNet needs VQA region features with USE_BBOX_FEAT False (its relation geometry "
                             f"uses the raw pixel boxes); got DATA_FORMAT {cfg.DATA_FORMAT!r}, "
                             f"USE_BBOX_FEAT {cfg.USE_BBOX_FEAT}")
        self.add_stem(cfg, pretrained_emb, token_size)
        self.backbone = NAS_ED(cfg)
        self.linear_rel = Linear(4, cfg.REL_SIZE)
        self.relu = nn.ReLU()
        self.add_head(cfg, answer_size)

    def forward(self, frcn_feat, grid_feat, bbox_feat, ques_ix, rel_geom=None):
        """``rel_geom``: (B, N, N, 4) from core.geometry (the dataset's 'rel_geom'); computed from bbox_feat if None."""
        lang_feat, lang_mask, img_feat, img_mask = self.embed(frcn_feat, grid_feat, bbox_feat, ques_ix)
        if rel_geom is None:
            rel_geom = relation_geometry(bbox_feat[..., :4])
        rela = self.relu(self.linear_rel(rel_geom))
        lang_feat, img_feat = self.backbone(lang_feat, img_feat, lang_mask, img_mask, rela)
        return self.classify(lang_feat, lang_mask, img_feat, img_mask)
