"""Datasets for VQA-v2 and CLEVR (and the generated demo data in the VQA/CLEVR on-disk formats). numpy only."""
from core.data.paths import cfg_get

MODES = ("train", "val", "test")


def build_dataset(cfg, mode):
    """The dataset of ``mode`` ('train' | 'val' | 'test') for cfg.DATA_FORMAT ('vqa' | 'clevr').

    DATASET 'demo' reads whichever format DATA_FORMAT names (default 'vqa') under its DATA_ROOT.
    """
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    fmt = cfg_get(cfg, "DATA_FORMAT") or ("clevr" if cfg.DATASET == "clevr" else "vqa")
    if fmt == "clevr":
        from core.data.clevr import CLEVRDataset
        return CLEVRDataset(cfg, mode)
    if fmt == "vqa":
        from core.data.vqa import VQADataset
        return VQADataset(cfg, mode)
    raise ValueError(f"DATA_FORMAT: expected 'vqa' or 'clevr', got {fmt!r}")
