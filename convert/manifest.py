"""What a model's checkpoint holds, asked of the model itself: keys, shapes, parameter order, Linear weights.

The converter never guesses a transpose from a name or a shape (most weights here are square). It builds the Net of
the config in whichever framework is installed (torch first: it builds faster and imports lighter; paddle
otherwise), reads the facts off it and drops it. Both frameworks' Nets are mirrored (tests/test_parity_models.py
checks the module trees), so either gives the same manifest.

The sizes a Net needs besides the config come from the checkpoint itself: token_size from embedding.weight's rows,
answer_size from proj.bias (its length is the same in both layouts), num_classes (image classifiers) from head.bias,
so no dataset is read.
"""
import dataclasses

from core import registry
from formats.layout import CheckpointMismatch

FRAMEWORKS = ("torch", "paddle")
TOKEN_KEY = "embedding.weight"
ANSWER_KEY = "proj.bias"


class NoFramework(ImportError):
    """Neither torch nor paddle can be imported, so no model can say which tensors are Linear weights."""


@dataclasses.dataclass(frozen=True)
class Manifest:
    framework: str              # the framework whose Net was asked
    keys: tuple                 # state-dict keys in registration order (LSTM under torch's names)
    param_names: tuple          # trainable parameters in the order an optimizer sees them (same in both frameworks)
    linear_keys: frozenset      # keys of nn.Linear weights: torch [out, in], paddle [in, out]
    torch_shapes: dict          # {key: shape} in torch's layout

    def shapes(self, layout):
        """{key: shape} in 'torch' or 'paddle' layout."""
        if layout == "torch":
            return dict(self.torch_shapes)
        if layout != "paddle":
            raise ValueError(f"layout must be 'torch' or 'paddle', got {layout!r}")
        return {k: tuple(reversed(s)) if k in self.linear_keys else s for k, s in self.torch_shapes.items()}


def sizes_from_state(state, path):
    """(token_size, answer_size) of a checkpoint's state dict (either layout)."""
    missing = [k for k in (TOKEN_KEY, ANSWER_KEY) if k not in state]
    if missing:
        raise CheckpointMismatch(f"{path}: no {' or '.join(missing)} in the checkpoint, so its vocabulary / answer "
                                 f"sizes are unknown; is it a checkpoint of an openvqa model (trar, mcan, mmnasnet)?")
    emb, bias = state[TOKEN_KEY], state[ANSWER_KEY]
    if len(emb.shape) != 2 or len(bias.shape) != 1:
        raise CheckpointMismatch(f"{path}: {TOKEN_KEY} must be 2-D and {ANSWER_KEY} 1-D, got shapes "
                                 f"{tuple(emb.shape)} and {tuple(bias.shape)}")
    return int(emb.shape[0]), int(bias.shape[0])


# build_model's facts read off a state dict: fact -> the key whose first dimension it is (same in both layouts)
FACT_KEYS = {"token_size": TOKEN_KEY, "answer_size": ANSWER_KEY, "num_classes": "head.bias"}


def facts_from_state(cfg, state, path):
    """{fact: size} of a checkpoint's state dict (either layout) for the facts cfg's model's task needs
    (vqa: token_size, answer_size; classification: num_classes)."""
    task = registry.task(registry.model_of(cfg).task)
    if set(task.facts) - set(task.fact_defaults) == {"token_size", "answer_size"}:
        return dict(zip(("token_size", "answer_size"), sizes_from_state(state, path)))
    facts = {}
    for fact in task.facts:
        if fact in task.fact_defaults:
            continue
        key = FACT_KEYS[fact]
        if key not in state:
            raise CheckpointMismatch(f"{path}: no {key} in the checkpoint, so its {fact} is unknown; is it a "
                                     f"checkpoint of a {task.name} model ({cfg.MODEL})?")
        facts[fact] = int(state[key].shape[0])
    return facts


def _torch_manifest(cfg, *sizes, **facts):
    from backends.torch.layers import linear_weight_names
    from backends.torch.models import build_net
    # A plain CPU build: the meta device would save the memory but costs seconds of lazy imports on first use.
    net = build_net(cfg, *sizes, **facts)
    params = tuple(name for name, p in net.named_parameters() if p.requires_grad)
    state = net.state_dict()
    return Manifest("torch", tuple(state), params, frozenset(linear_weight_names(net)),
                    {k: tuple(v.shape) for k, v in state.items()})


def _paddle_manifest(cfg, *sizes, **facts):
    from backends.paddle.layers import linear_weight_names
    from backends.paddle.models import build_net
    net = build_net(cfg, *sizes, **facts)   # paddle.LazyGuard cannot build nn.LSTM (3.3.1)
    linear = frozenset(linear_weight_names(net))
    params = tuple(name for name, p in net.named_parameters() if not p.stop_gradient)
    state = net.state_dict()    # LSTM tensors once, under torch's names (backends.paddle.layers.LSTM)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    torch_shapes = {k: tuple(reversed(s)) if k in linear else s for k, s in shapes.items()}
    return Manifest("paddle", tuple(state), params, linear, torch_shapes)


_BUILDERS = {"torch": _torch_manifest, "paddle": _paddle_manifest}


def build_manifest(cfg, *sizes, frameworks=FRAMEWORKS, **facts):
    """The Manifest of cfg's Net (built from the facts: VQA's token_size, answer_size, by position or name; a
    classifier's num_classes), from the first framework in ``frameworks`` that imports."""
    failures = []
    for name in frameworks:
        try:
            return _BUILDERS[name](cfg, *sizes, **facts)
        except ImportError as exc:
            failures.append(f"{name}: {exc}")
    raise NoFramework(f"the converter builds the model to learn its layer types, but neither torch nor paddle "
                      f"imports ({'; '.join(failures)}); install one: pip install torch==2.13.0 or "
                      f"paddlepaddle==3.3.1")



def initial_values(cfg, keys, frameworks=FRAMEWORKS, **facts):
    """{key: numpy array in torch's layout} of a freshly built Net's ``keys`` (what a checkpoint without them, e.g.
    Google's ViT .npz without ViT+TRAR's routing heads, leaves at the net's initialisation)."""
    for name in frameworks:
        try:
            if name == "torch":
                from backends.torch.models import build_net
                net = build_net(cfg, **facts)
                state = {k: v.detach().numpy() for k, v in net.state_dict().items()}
                linear = set()
            else:
                from backends.paddle.layers import linear_weight_names
                from backends.paddle.models import build_net
                net = build_net(cfg, **facts)
                state = {k: v.numpy() for k, v in net.state_dict().items()}
                linear = linear_weight_names(net)
        except ImportError:
            continue
        return {k: state[k].T.copy() if k in linear else state[k].copy() for k in keys}
    raise NoFramework("building the model's initial values needs torch or paddle")
