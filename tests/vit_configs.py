"""Configs of the ViT models for the tests, whether or not the image datasets are registered yet.

The image datasets (imagenet, cifar10, cifar100, demo_images) and their ymls come with the image data (issue 24,
items 4-6). The ``image_configs`` fixture registers a stand-in ``imagenet`` dataset of the classification task where
none is registered, and writes the ymls below (ViT-B/16 at 224, the original's B_16 config) into a temporary copy of
the configs folder, for the test only: the model tests start from these sizes whatever the shipped ymls choose
(tests/test_registry.py checks those).
"""
import shutil

import numpy as np
import pytest

from core import config, registry

IMAGE_DATASET = "imagenet"
B16_224 = ("IMG_SIZE: 224\nPATCH_SIZE: 16\nHIDDEN_SIZE: 768\nFF_SIZE: 3072\nMULTI_HEAD: 12\nLAYER: 12\n"
           "DROPOUT_R: 0.1\nATTN_DROPOUT_R: 0.0\nCLASSIFIER: token\nLOSS_FUNC: ce\nLOSS_REDUCTION: mean\n")
YMLS = {
    "vit": "MODEL_USE: vit\n" + B16_224,
    "vit_trar": "MODEL_USE: vit_trar\n" + B16_224 + "ORDERS: [0, 1, 2, 3]\nPOOLING: avg\nROUTING: soft\n",
}
# Tiny: a 4x4 patch grid (IMG_SIZE 16, PATCH_SIZE 4), 2 layers; FF_SIZE differs from HIDDEN_SIZE so swapped
# dimensions fail loudly.
TINY_VIT = dict(IMG_SIZE=16, PATCH_SIZE=4, HIDDEN_SIZE=32, FF_SIZE=48, MULTI_HEAD=4, LAYER=2)
NUM_CLASSES = 5


class NoImages:
    """The stand-in dataset class (never read by these tests)."""

    def __init__(self, cfg, mode):
        raise RuntimeError("tests/vit_configs.py: the stand-in imagenet dataset holds no images")


@pytest.fixture
def image_configs(tmp_path, monkeypatch):
    """load_config(model, 'imagenet') gives YMLS' configs for vit and vit_trar in this test."""
    if IMAGE_DATASET not in registry.DATASETS:
        monkeypatch.setitem(registry.FORMATS, "stand_in_images", registry.FormatSpec(
            "stand_in_images", task="classification", loader=f"{__name__}:NoImages", loss_funcs=("ce",)))
        monkeypatch.setitem(registry.DATASETS, IMAGE_DATASET, registry.DatasetSpec(
            IMAGE_DATASET, "stand_in_images", train_splits=("train", "val")))
    configs = tmp_path / "configs"
    shutil.copytree(config.CONFIGS_DIR, configs)
    (configs / IMAGE_DATASET).mkdir(exist_ok=True)
    for model, text in YMLS.items():
        (configs / IMAGE_DATASET / f"{model}.yml").write_text(text)
    monkeypatch.setattr(config, "CONFIGS_DIR", str(configs))


def vit_cfg(model="vit_trar", **overrides):
    """A tiny ViT config (needs the image_configs fixture); ``overrides`` win."""
    return config.load_config(model, IMAGE_DATASET, overrides={**TINY_VIT, **overrides})


def full_vit_cfg(model="vit_trar", **overrides):
    """The B/16 config at 224, changed only by ``overrides``."""
    return config.load_config(model, IMAGE_DATASET, overrides=overrides)


def make_images(cfg, batch_size=3, seed=0):
    """Normalised images (B, 3, S, S) float32 in [-1, 1], as the originals' transforms give."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (batch_size, 3, cfg.IMG_SIZE, cfg.IMG_SIZE)).astype(np.float32)
