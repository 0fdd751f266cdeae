"""PaddlePaddle models by cfg.MODEL_USE. Mirror of backends/torch/models/__init__.py."""
from backends.base import model_facts, model_module
from backends.paddle.compat import init_like_torch


def model_class(cfg):
    """Net of backends/paddle/models/<MODEL_USE>.py (core/registry.py lists the MODEL_USE names)."""
    return model_module(__name__, cfg).Net


def build_net(cfg, *args, **facts):
    """The Net of cfg.MODEL_USE from the dataset's facts (backends.base.model_facts: keywords or VQA's positional
    token_size, answer_size, pretrained_emb)."""
    net_class = model_class(cfg)
    # PyTorch's default initialisation, the one the original models train from (torch's build_net gets it for free)
    return init_like_torch(net_class(cfg, **model_facts(cfg, args, facts)))


def state_dict_shapes(cfg, *args, **facts):
    """{key: shape} of the net's state dict in this framework's layout.

    Unlike torch's meta device, this allocates the weights: paddle.LazyGuard cannot build paddle.nn.LSTM (3.3.1).
    """
    net = build_net(cfg, *args, **facts)
    return {name: tuple(value.shape) for name, value in net.state_dict().items()}
