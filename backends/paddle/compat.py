"""Where paddle is made to look like the torch originals: the LSTM's parameter names and PyTorch's initialisation.

- LSTM, cell_aliases, lstm_aliases, LSTMAliasLoading: a Net's state dict holds the LSTM under torch's names only,
  and loads a dict with torch's names, paddle.nn.LSTM's per-cell aliases, or both (the Paddle ports' files);
- init_like_torch: every Linear and Conv2D re-drawn as PyTorch initialises it (then a layer's own original init).
"""
import math

from paddle import nn


class LSTM(nn.LSTM):
    """paddle.nn.LSTM whose state_dict() holds each parameter once, under torch's name.

    paddle.nn.LSTM lists every tensor twice in its state dict: as ``weight_ih_l0`` (torch's name) and as
    ``0.cell.weight_ih`` (the per-cell alias of the same Parameter). A state-dict hook drops the aliases, so
    ``Net.state_dict()`` has exactly the torch key set (``lstm.weight_ih_l0``, ``lstm.weight_hh_l0``,
    ``lstm.bias_ih_l0``, ``lstm.bias_hh_l0``), in the same [4H, in] layout and gate order (i, f, g, o).
    Paddle's ``set_state_dict`` runs no hooks and expects both names; ``LSTMAliasLoading.set_state_dict`` fills in
    whichever name is missing, so a dict with torch names, with paddle's aliases, or with both loads without warnings.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Computed once: the hook also runs inside paddle.jit.save, where named_parameters() cannot be called.
        self.aliases = cell_aliases(self)
        self.register_state_dict_hook(self._drop_cell_aliases)

    def _drop_cell_aliases(self, destination):
        # The hook gets the whole dict being built, whose outer prefix it does not know: drop "<p>0.cell.weight_ih"
        # only when its twin "<p>weight_ih_l0" is there too.
        for alias, torch_name in self.aliases.items():
            for key in [k for k in destination if k == alias or k.endswith("." + alias)]:
                if key[:len(key) - len(alias)] + torch_name in destination:
                    del destination[key]
        return destination


def cell_aliases(lstm):
    """{paddle alias relative to ``lstm`` (e.g. '0.cell.weight_ih'): torch name (e.g. 'weight_ih_l0')}, matched by
    Parameter identity."""
    torch_names = {id(p): name for name, p in lstm.named_parameters(include_sublayers=False)}
    aliases = {}
    for prefix, layer in lstm.named_sublayers():
        for name, p in layer.named_parameters(include_sublayers=False):
            if id(p) in torch_names:
                aliases[f"{prefix}.{name}"] = torch_names[id(p)]
    return aliases


def lstm_aliases(net):
    """{full alias key: full torch key} for every paddle.nn.LSTM inside ``net``."""
    pairs = {}
    for prefix, layer in net.named_sublayers(include_self=True):
        if isinstance(layer, nn.LSTM):
            base = f"{prefix}." if prefix else ""
            aliases = layer.aliases if isinstance(layer, LSTM) else cell_aliases(layer)
            pairs.update({base + alias: base + name for alias, name in aliases.items()})
    return pairs


class LSTMAliasLoading(nn.Layer):
    """A Layer whose set_state_dict accepts LSTM tensors under torch names, paddle aliases or both (the base of the
    Nets' NetBase)."""

    def set_state_dict(self, state_dict, use_structured_name=True):
        state_dict = dict(state_dict)
        for alias, name in lstm_aliases(self).items():
            if name in state_dict and alias not in state_dict:
                state_dict[alias] = state_dict[name]
            elif alias in state_dict and name not in state_dict:
                state_dict[name] = state_dict[alias]
        return super().set_state_dict(state_dict, use_structured_name)


def init_like_torch(net):
    """Re-draw every Linear and Conv2D as PyTorch initialises it: weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in));
    then a layer with an initialisation of its own in the original (``_init_weights``, e.g. ViT's Mlp) runs it again.

    The original models train from PyTorch's defaults; Paddle's (Xavier weights, zero biases) train the same net to a
    lower accuracy band on the demo data. The Embedding is drawn N(0, 1) in layers.make_embedding and paddle.nn.LSTM
    already draws U(-1/sqrt(hidden), 1/sqrt(hidden)) as torch does. Uses paddle's RNG, so paddle.seed fixes it.
    """
    for layer in net.sublayers(include_self=True):
        if isinstance(layer, nn.Linear):
            bound = 1.0 / math.sqrt(layer.weight.shape[0])   # Paddle's Linear weight is [in, out]
            init = nn.initializer.Uniform(-bound, bound)
            init(layer.weight)
            if layer.bias is not None:
                init(layer.bias)
        elif isinstance(layer, nn.Conv2D):
            fan_in = math.prod(layer.weight.shape[1:])      # [out, in / groups, kh, kw] in both frameworks
            init = nn.initializer.Uniform(-1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in))
            init(layer.weight)
            if layer.bias is not None:
                init(layer.bias)
    for layer in net.sublayers(include_self=True):
        if hasattr(layer, "_init_weights"):
            layer._init_weights()
    return net
