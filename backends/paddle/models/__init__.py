"""PaddlePaddle models by cfg.MODEL_USE. Mirror of backends/torch/models/__init__.py."""
from backends.paddle.layers import init_like_torch
from backends.paddle.models import mcan, mmnasnet, trar

MODEL_CLASSES = {"trar": trar.Net, "mcan": mcan.Net, "mmnasnet": mmnasnet.Net}


def model_class(cfg):
    name = str(cfg.MODEL_USE).lower()
    if name not in MODEL_CLASSES:
        raise ValueError(f"MODEL_USE {cfg.MODEL_USE!r} is not a model of this backend; expected one of "
                         f"{sorted(MODEL_CLASSES)}")
    return MODEL_CLASSES[name]


def build_net(cfg, token_size, answer_size, pretrained_emb=None):
    # PyTorch's default initialisation, the one the original models train from (torch's build_net gets it for free)
    return init_like_torch(model_class(cfg)(cfg, pretrained_emb, token_size, answer_size))


def state_dict_shapes(cfg, token_size, answer_size):
    """{key: shape} of the net's state dict in this framework's layout.

    Unlike torch's meta device, this allocates the weights: paddle.LazyGuard cannot build paddle.nn.LSTM (3.3.1).
    """
    net = build_net(cfg, token_size, answer_size)
    return {name: tuple(value.shape) for name, value in net.state_dict().items()}
