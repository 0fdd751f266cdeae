"""Tiny model configs, numpy inputs and a little framework glue for the model tests.

Configs come from core.config.load_config, so the tests build exactly what a run would, only smaller.
The glue (to_tensor, to_numpy, state I/O, output capture) is the per-framework part a test needs to treat a torch
and a paddle Net alike; models themselves are reached through backends.<name>.models.
"""
import importlib

import numpy as np

from core import registry
from core.config import load_config

# Small enough to run in milliseconds; MULTI_HEAD divides HIDDEN_SIZE; FLAT_OUT_SIZE differs from HIDDEN_SIZE so
# swapped dimensions fail loudly.
TINY = dict(LAYER=2, HIDDEN_SIZE=32, FF_SIZE=64, MULTI_HEAD=4, FLAT_MLP_SIZE=16, FLAT_OUT_SIZE=48, WORD_EMBED_SIZE=12)
TOKEN_SIZE = 20
ANSWER_SIZE = 7
# VQA grid 4x4 (16 rows of width 24); CLEVR grid 5x5 (25 rows of width 20); MCAN regions: 10 boxes.
TINY_VQA_GRID = dict(IMG_SCALE=4, ORDERS=[0, 1, 2], FEAT_SIZE={"vqa": {"FRCN_FEAT_SIZE": (16, 24)}})
TINY_CLEVR_GRID = dict(IMG_SCALE=5, ORDERS=[0, 1, 3], FEAT_SIZE={"clevr": {"GRID_FEAT_SIZE": (25, 20)}})
TINY_REGIONS = dict(FEAT_SIZE={"vqa": {"FRCN_FEAT_SIZE": (10, 24), "BBOX_FEAT_SIZE": (10, 5)}})
QUESTION_LEN = {"vqa": 14, "clevr": 9}


def tiny_cfg(model="trar", dataset="vqa", **overrides):
    """A validated Config for ``configs/<dataset>/<model>.yml`` at tiny sizes; ``overrides`` win."""
    # a grid reader (TRAR): its span masks need IMG_SCALE x IMG_SCALE rows
    if registry.model(model).features == "grid":
        base = dict(TINY_CLEVR_GRID if dataset == "clevr" else TINY_VQA_GRID)
    else:
        base = dict(TINY_REGIONS)
    return load_config(model, dataset, overrides={**TINY, **base, **overrides})


def full_cfg(model="trar", dataset="vqa", **overrides):
    """The shipped config, unchanged except for ``overrides``."""
    return load_config(model, dataset, overrides=overrides)


def image_rows(cfg):
    if cfg.DATA_FORMAT == "clevr":
        return cfg.FEAT_SIZE["clevr"]["GRID_FEAT_SIZE"]
    return cfg.FEAT_SIZE["vqa"]["FRCN_FEAT_SIZE"]


def make_batch(cfg, batch_size=3, seed=0, padded_rows=((1, 7), (2, 3)), padded_tokens=((0, 9), (1, 4), (2, 1))):
    """Numpy inputs in the sample format of docs/architecture.md.

    padded_rows: (sample, n) pairs; the last n image rows of that sample are zero (padding).
    padded_tokens: (sample, n) pairs; the question has n real tokens, the rest are PAD (0).
    """
    rng = np.random.default_rng(seed)
    rows, width = image_rows(cfg)
    image = rng.standard_normal((batch_size, rows, width)).astype(np.float32)
    for sample, n in padded_rows:
        if sample < batch_size:
            image[sample, rows - n:] = 0
    q_len = QUESTION_LEN[cfg.DATA_FORMAT]
    ques_ix = rng.integers(1, TOKEN_SIZE, size=(batch_size, q_len)).astype(np.int64)
    for sample, n in padded_tokens:
        if sample < batch_size:
            ques_ix[sample, n:] = 0
    zeros = np.zeros((batch_size, 1), np.float32)
    batch = {"frcn_feat": zeros, "grid_feat": zeros, "bbox_feat": zeros, "ques_ix": ques_ix}
    if cfg.DATA_FORMAT == "clevr":
        batch["grid_feat"] = image
    else:
        batch["frcn_feat"] = image
        if cfg.USE_BBOX_FEAT:
            bbox = rng.uniform(0, 1, (batch_size, rows, cfg.FEAT_SIZE["vqa"]["BBOX_FEAT_SIZE"][1]))
            batch["bbox_feat"] = bbox.astype(np.float32)
    return batch


INPUT_KEYS = ("frcn_feat", "grid_feat", "bbox_feat", "ques_ix")


# ---- framework glue -------------------------------------------------------------------------------------------

def models_module(fw):
    return importlib.import_module(f"backends.{fw}.models")


def layers_module(fw):
    return importlib.import_module(f"backends.{fw}.layers")


def build(fw, cfg, seed=0, token_size=TOKEN_SIZE, answer_size=ANSWER_SIZE, pretrained_emb=None):
    seed_framework(fw, seed)
    return models_module(fw).build_net(cfg, token_size, answer_size, pretrained_emb=pretrained_emb)


def seed_framework(fw, seed):
    if fw == "torch":
        import torch
        torch.manual_seed(seed)
    else:
        import paddle
        paddle.seed(seed)


def to_tensor(fw, array):
    if fw == "torch":
        import torch
        return torch.from_numpy(np.ascontiguousarray(array))
    import paddle
    return paddle.to_tensor(array)


def to_numpy(fw, tensor):
    if fw == "torch":
        return tensor.detach().cpu().numpy()
    return tensor.numpy()


def forward(fw, net, batch, train=False):
    """Logits as a framework tensor; no grad in eval mode."""
    if train:
        net.train()
    else:
        net.eval()
    inputs = [to_tensor(fw, batch[k]) for k in INPUT_KEYS]
    if train:
        return net(*inputs)
    if fw == "torch":
        import torch
        with torch.no_grad():
            return net(*inputs)
    import paddle
    with paddle.no_grad():
        return net(*inputs)


def predict(fw, net, batch):
    return to_numpy(fw, forward(fw, net, batch))


def numpy_state(fw, net):
    return {k: to_numpy(fw, v) for k, v in net.state_dict().items()}


def load_state(fw, net, state):
    """Load a {key: numpy} dict in this framework's layout; every key must match (strict)."""
    if fw == "torch":
        import torch
        net.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, strict=True)
        return
    missing, unexpected = net.set_state_dict(state)
    assert not missing and not unexpected, f"paddle set_state_dict: missing {missing}, unexpected {unexpected}"


def capture(fw, layer, store, name):
    """Record ``layer``'s output in ``store[name]`` at every forward; returns the hook handle."""
    def hook(_layer, _inputs, output):
        store[name] = output
    if fw == "torch":
        return layer.register_forward_hook(hook)
    return layer.register_forward_post_hook(hook)


def named_grads(fw, net):
    """{parameter name: numpy gradient} after a backward."""
    grads = {}
    for name, p in net.named_parameters():
        g = p.grad
        grads[name] = None if g is None else to_numpy(fw, g)
    return grads
