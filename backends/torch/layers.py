"""Blocks shared by the openvqa-family models (PyTorch). Mirrored in backends/paddle/layers.py.

Attribute names and registration order follow openvqa (ops/fc.py, ops/layer_norm.py, models/mcan), so state-dict
keys equal the original checkpoints' keys. Masks are bool tensors, True = masked, filled with MASK_FILL (never -inf:
a fully masked row then attends uniformly instead of giving NaN).
CPU speed kernels live in backends/torch/cpu_ops.py, called by names both cpu_ops modules define; this
file holds the structure, and tests/test_mirror.py keeps its outline equal to its twin's.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from backends.torch import cpu_ops

MASK_FILL = -1e9
LSTM = nn.LSTM


def masked_fill(x, mask):
    """MASK_FILL where ``mask`` is True (fp32, as the original); clipped to the dtype's range so half precision
    gets no -inf (and no NaN rows)."""
    fill = max(MASK_FILL, torch.finfo(x.dtype).min)
    return x.masked_fill(mask, fill)


def make_mask(feature):
    """(B, n, d) -> (B, 1, 1, n) bool, True where a row is all zeros (padding)."""
    return (torch.sum(torch.abs(feature), dim=-1) == 0).unsqueeze(1).unsqueeze(2)


def linear_weight_names(net):
    """State-dict keys of the weights of every nn.Linear in ``net`` (found by module type, not by name or shape)."""
    return {f"{name}.weight" if name else "weight"
            for name, module in net.named_modules() if isinstance(module, nn.Linear)}


class Linear(nn.Linear):
    """nn.Linear (same parameters, same maths); its CPU kernel is chosen in cpu_ops.linear."""

    def forward(self, x):
        return cpu_ops.linear(x, self.weight, self.bias)


class Dropout(nn.Dropout):
    """nn.Dropout whose CPU mask comes from core.dropout_masks (the same masks as the paddle twin, cpu_ops.dropout);
    on a GPU, or for other dtypes, it is torch's own dropout."""

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        if not cpu_ops.takes_dropout(self, x):
            return super().forward(x)
        return cpu_ops.dropout(x, self.p)


class NetBase(nn.Module):
    """Base of the Nets: the stem and head that TRAR, MCAN and MMNasNet share (the paddle twin also maps LSTM
    parameter aliases when loading)."""

    def add_stem(self, cfg, pretrained_emb, token_size):
        """The question stem and the image adapter, registered first as in the original."""
        self.embedding = make_embedding(token_size, cfg.WORD_EMBED_SIZE, pretrained_emb)
        self.lstm = LSTM(input_size=cfg.WORD_EMBED_SIZE, hidden_size=cfg.HIDDEN_SIZE, num_layers=1, batch_first=True)
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


class FC(nn.Module):
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


class MLP(nn.Module):
    def __init__(self, in_size, mid_size, out_size, dropout_r=0.0, use_relu=True):
        super().__init__()
        self.fc = FC(in_size, mid_size, dropout_r=dropout_r, use_relu=use_relu)
        self.linear = Linear(mid_size, out_size)

    def forward(self, x):
        return self.linear(self.fc(x))


class LayerNorm(nn.Module):
    """openvqa's LayerNorm: a_2 * (x - mean) / (unbiased std + eps) + b_2. Not torch.nn.LayerNorm."""

    def __init__(self, size, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.a_2 = nn.Parameter(torch.ones(size))
        self.b_2 = nn.Parameter(torch.zeros(size))

    def forward(self, x):
        return cpu_ops.layer_norm(x, self.a_2, self.b_2, self.eps)


class MHAtt(nn.Module):
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
        return x.reshape(x.shape[0], -1, self.multi_head, self.hidden_size // self.multi_head).transpose(1, 2)

    def merge_heads(self, x):
        """(B, heads, n, H / heads) -> (B, n, H)."""
        return x.transpose(1, 2).reshape(x.shape[0], -1, self.hidden_size)

    def scores(self, k, q):
        return torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(q.shape[-1])

    def forward(self, v, k, q, mask):
        v = self.split_heads(self.linear_v(v))
        k = self.split_heads(self.linear_k(k))
        q = self.split_heads(self.linear_q(q))
        scores = self.scores(k, q)
        if mask is not None:
            scores = masked_fill(scores, mask)
        att_map = self.dropout(F.softmax(scores, dim=-1))
        return self.linear_merge(self.merge_heads(torch.matmul(att_map, v)))


class FFN(nn.Module):
    def __init__(self, hidden_size, ff_size, dropout_r):
        super().__init__()
        self.mlp = MLP(hidden_size, ff_size, hidden_size, dropout_r=dropout_r, use_relu=True)

    def forward(self, x):
        return self.mlp(x)


def glimpse_sums(att, x):
    """(B, N, G) token weights, (B, N, H) tokens -> (B, G * H): each glimpse's weighted sum over the tokens, the
    glimpses concatenated in order (openvqa's formulation)."""
    return torch.cat([torch.sum(att[:, :, i:i + 1] * x, dim=1) for i in range(att.shape[-1])], dim=1)


class AttFlat(nn.Module):
    """Attention pooling over tokens: ``glimpses`` softmax-weighted sums, concatenated, then linear_merge."""

    def __init__(self, in_size, mid_size, glimpses, out_size, dropout_r):
        super().__init__()
        self.glimpses = glimpses
        self.mlp = MLP(in_size, mid_size, glimpses, dropout_r=dropout_r, use_relu=True)
        self.linear_merge = Linear(in_size * glimpses, out_size)

    def forward(self, x, x_mask):
        att = self.mlp(x)
        att = masked_fill(att, x_mask.squeeze(1).squeeze(1).unsqueeze(2))
        att = F.softmax(att, dim=1)
        return self.linear_merge(glimpse_sums(att, x))


class SA(nn.Module):
    """Self-attention layer (openvqa MCAN SA, TRAR encoder): post-LN residual attention, then FFN."""

    def __init__(self, hidden_size, ff_size, multi_head, dropout_r, mhatt=None):
        super().__init__()
        # mhatt: another attention of MHAtt's call signature (RWSAN's low-rank RWSA), built by the caller
        self.mhatt = MHAtt(hidden_size, multi_head, dropout_r) if mhatt is None else mhatt
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
    embedding = nn.Embedding(token_size, embed_size)
    if pretrained_emb is not None:
        check_pretrained_emb(pretrained_emb, token_size, embed_size)
        with torch.no_grad():
            embedding.weight.copy_(torch.as_tensor(pretrained_emb, dtype=torch.float32))
    return embedding


def check_pretrained_emb(pretrained_emb, token_size, embed_size):
    if tuple(pretrained_emb.shape) != (token_size, embed_size):
        raise ValueError(f"pretrained_emb has shape {tuple(pretrained_emb.shape)}, expected (token_size, "
                         f"WORD_EMBED_SIZE) = ({token_size}, {embed_size})")


class Adapter(nn.Module):
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
            frcn_feat = torch.cat((frcn_feat, self.bbox_linear(bbox_feat)), dim=-1)
        return self.frcn_linear(frcn_feat), img_mask
