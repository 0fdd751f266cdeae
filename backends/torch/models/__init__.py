"""PyTorch models by cfg.MODEL_USE. Mirrored in backends/paddle/models/__init__.py."""
import torch

from backends.torch.models import mcan, mmnasnet, trar

MODEL_CLASSES = {"trar": trar.Net, "mcan": mcan.Net, "mmnasnet": mmnasnet.Net}


def model_class(cfg):
    name = str(cfg.MODEL_USE).lower()
    if name not in MODEL_CLASSES:
        raise ValueError(f"MODEL_USE {cfg.MODEL_USE!r} is not a model of this backend; expected one of "
                         f"{sorted(MODEL_CLASSES)}")
    return MODEL_CLASSES[name]


def build_net(cfg, token_size, answer_size, pretrained_emb=None):
    return model_class(cfg)(cfg, pretrained_emb, token_size, answer_size)


def state_dict_shapes(cfg, token_size, answer_size):
    """{key: shape} of the net's state dict in this framework's layout, without allocating the weights."""
    with torch.device("meta"):
        net = build_net(cfg, token_size, answer_size)
    return {name: tuple(value.shape) for name, value in net.state_dict().items()}
