"""MCAN (openvqa models/mcan) in PyTorch, small and large by config. Mirrored in backends/paddle/models/mcan.py.

Encoder-decoder: SA layers on the question, then SGA layers on the image (self-attention, guided attention to the
final question features, FFN). Parameter names equal openvqa's.
"""
from torch import nn

from backends.torch.layers import FFN, SA, Dropout, LayerNorm, MHAtt, NetBase


class SGA(nn.Module):
    """Image self-attention, then the image (queries) attends to the question, then FFN. ``mhatt1`` / ``mhatt2``:
    other attentions of MHAtt's call signature (RWSAN's low-rank RWSA), built by the caller."""

    def __init__(self, cfg, mhatt1=None, mhatt2=None):
        super().__init__()
        self.mhatt1 = MHAtt(cfg.HIDDEN_SIZE, cfg.MULTI_HEAD, cfg.DROPOUT_R) if mhatt1 is None else mhatt1
        self.mhatt2 = MHAtt(cfg.HIDDEN_SIZE, cfg.MULTI_HEAD, cfg.DROPOUT_R) if mhatt2 is None else mhatt2
        self.ffn = FFN(cfg.HIDDEN_SIZE, cfg.FF_SIZE, cfg.DROPOUT_R)
        self.dropout1 = Dropout(cfg.DROPOUT_R)
        self.norm1 = LayerNorm(cfg.HIDDEN_SIZE)
        self.dropout2 = Dropout(cfg.DROPOUT_R)
        self.norm2 = LayerNorm(cfg.HIDDEN_SIZE)
        self.dropout3 = Dropout(cfg.DROPOUT_R)
        self.norm3 = LayerNorm(cfg.HIDDEN_SIZE)

    def forward(self, x, y, x_mask, y_mask):
        x = self.norm1(x + self.dropout1(self.mhatt1(x, x, x, x_mask)))
        x = self.norm2(x + self.dropout2(self.mhatt2(y, y, x, y_mask)))
        return self.norm3(x + self.dropout3(self.ffn(x)))


class MCA_ED(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.enc_list = nn.ModuleList(
            [SA(cfg.HIDDEN_SIZE, cfg.FF_SIZE, cfg.MULTI_HEAD, cfg.DROPOUT_R) for _ in range(cfg.LAYER)])
        self.dec_list = nn.ModuleList([SGA(cfg) for _ in range(cfg.LAYER)])

    def forward(self, y, x, y_mask, x_mask):
        for enc in self.enc_list:
            y = enc(y, y_mask)
        for dec in self.dec_list:
            x = dec(x, y, x_mask, y_mask)
        return y, x


class Net(NetBase):
    backbone_class = MCA_ED   # LSAT's Net is this one with its windowed backbone

    def __init__(self, cfg, pretrained_emb, token_size, answer_size):
        super().__init__()
        self.add_stem(cfg, pretrained_emb, token_size)
        self.backbone = self.backbone_class(cfg)
        self.add_head(cfg, answer_size)

    def forward(self, frcn_feat, grid_feat, bbox_feat, ques_ix):
        lang_feat, lang_mask, img_feat, img_mask = self.embed(frcn_feat, grid_feat, bbox_feat, ques_ix)
        lang_feat, img_feat = self.backbone(lang_feat, img_feat, lang_mask, img_mask)
        return self.classify(lang_feat, lang_mask, img_feat, img_mask)
