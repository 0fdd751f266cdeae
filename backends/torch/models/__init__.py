"""PyTorch models by cfg.MODEL_USE. Mirrored in backends/paddle/models/__init__.py."""
import torch

from backends.base import model_facts, model_module


def model_class(cfg):
    """Net of backends/torch/models/<MODEL_USE>.py (core/registry.py lists the MODEL_USE names)."""
    return model_module(__name__, cfg).Net


def build_net(cfg, *args, **facts):
    """The Net of cfg.MODEL_USE from the dataset's facts (backends.base.model_facts: keywords or VQA's positional
    token_size, answer_size, pretrained_emb)."""
    net_class = model_class(cfg)
    return net_class(cfg, **model_facts(cfg, args, facts))


def state_dict_shapes(cfg, *args, **facts):
    """{key: shape} of the net's state dict in this framework's layout, without allocating the weights."""
    with torch.device("meta"):
        net = build_net(cfg, *args, **facts)
    return {name: tuple(value.shape) for name, value in net.state_dict().items()}
