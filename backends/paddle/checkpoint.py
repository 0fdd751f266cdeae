"""Checkpoint files for the PaddlePaddle backend. Mirror of backends/torch/checkpoint.py.

Written: a pair, each to a temp file first; the .pdopt is renamed into place before the .pdparams, so a .pdparams is
never seen next to a missing or older .pdopt.
- <stem>.pdparams: paddle.save of {structured name: ndarray}, Paddle layout (Linear weights [in, out]), each LSTM
  tensor under both names paddle.nn.LSTM lists (lstm.weight_ih_l0 and lstm.0.cell.weight_ih), as the Paddle ports'
  files hold them; no name table. paddle.load + Layer.set_state_dict read it, in this project or in a port.
- <stem>.pdopt: paddle.save of
      {Paddle's accumulator name: ndarray, ...,             # optimizer.state_dict()'s entries, e.g.
                                                            # 'linear_3.w_0_moment1_0', 'linear_3.w_0_beta1_pow_acc_0'
       'paddle_accumulator_names': {accumulator name: [structured parameter name, accumulator]},
       'epoch': int, 'lr_base': float,
       'vocab_sha256': str, 'answers_sha256': str,          # the training data's (core/data/fingerprints.py)
       'pdparams_sha256': str, 'pdopt_sha256': str}         # formats/integrity.py: ties the pair, checked on read
  so ``optimizer.set_state_dict(paddle.load(path))`` takes it as it takes any Paddle .pdopt (set_state_dict looks up
  only its accumulators' names and ignores the rest). Those names are Paddle's internal ones (linear_12.w_0), which
  depend on how many layers the process had built before: a process that builds the same model first gets the same
  names. This project never relies on them: it reads the structured name beside each (formats.adam_state
  paddle_entry), and still reads the .pdopt files written before, which held
       'optimizer': {'framework': 'paddle',
                     'state': {structured parameter name: {'moment1': ndarray, 'moment2': ndarray,
                                                           'beta1_pow_acc': (1,), 'beta2_pow_acc': (1,)}}}
  instead (convert/'s torch2paddle still writes that layout where paddle is not installed, since Paddle's own
  names come from building the model: fresh_accumulator_names; run.py --RESUME reads both).
Read (a .pdopt's checksums checked first: a damaged file or a pair mixed from two saves is refused):
- this project's .pdparams; a Paddle port's (LSTM aliases lstm.0.cell.*, the 'StructuredToParameterName@@' table);
  a paddle.save'd openvqa container {'state_dict', 'optimizer', 'lr_base', 'epoch'};
- a torch .pkl (openvqa / TRAR-VQA container or bare state dict, zip or legacy format, a zip's CRC-32 checked) through
  formats.restricted_pickle, so torch is never imported; Linear weights are transposed using the model's Linear list.
- Google's official ViT .npz (formats.vit_npz): the original load_from's transforms, then the Linear transposes;
  keys the npz lacks (ViT+TRAR's routing heads) keep the net's values.
"""
import warnings

import numpy as np
import paddle

from backends.paddle.layers import linear_weight_names
from core.checkpoints import atomic_save
from formats import adam_state, integrity, layout, restricted_pickle, sgd_state, vit_npz


def read_checkpoint(path):
    """(loaded object, is_paddle_layout) of a checkpoint file of either framework."""
    if restricted_pickle.checkpoint_kind(path) == "pickle":
        return restricted_pickle.read_pdparams(path), True
    return restricted_pickle.read_torch_checkpoint(path), False


def _numpy_dtype(tensor):
    return np.dtype(str(tensor.dtype).split(".")[-1])


def load_google_npz(net, path):
    """Google's ViT .npz into ``net``; the routing heads it lacks keep their values. Returns the empty meta."""
    own = net.state_dict()
    linear = linear_weight_names(net)
    torch_shapes = {k: tuple(reversed(v.shape)) if k in linear else tuple(v.shape) for k, v in own.items()}
    state, kept, _notes = vit_npz.google_state(vit_npz.read_npz(path), torch_shapes, path)
    state = layout.to_paddle_layout(state, linear)
    state.update({key: own[key].numpy() for key in kept})
    net.set_state_dict({k: state[k].astype(_numpy_dtype(v), copy=False) for k, v in own.items()})
    return {"epoch": None, "lr_base": None, "optimizer": None}


def load_checkpoint(net, path):
    """Load weights into ``net`` (strict, with a report naming the config keys that probably differ);
    return {'epoch', 'lr_base', 'optimizer'}, None where the file has none."""
    if vit_npz.is_google_npz(path):
        return load_google_npz(net, path)
    obj, paddle_layout = read_checkpoint(path)
    state, meta = layout.split_container(obj, path)
    if paddle_layout:   # first: a .pdparams that does not pair with its .pdopt is refused before anything else
        meta = restricted_pickle.read_pdopt_meta(path, meta)
    state = layout.normalize_lstm_names({k: np.asarray(v) for k, v in state.items()})
    if not paddle_layout:
        state = layout.to_paddle_layout(state, linear_weight_names(net))
    own = net.state_dict()
    layout.check_compatible({k: tuple(v.shape) for k, v in own.items()},
                            {k: tuple(v.shape) for k, v in state.items()}, path)
    net.set_state_dict({k: state[k].astype(_numpy_dtype(v), copy=False) for k, v in own.items()})
    return meta


def _param_names(net):
    """{Paddle's internal parameter name: structured name}."""
    return {p.name: name for name, p in net.named_parameters()}


def _split_accumulator_key(key, internal_names):
    """'linear_3.w_0_moment1_0' -> ('linear_3.w_0', 'moment1'), or None for keys of no parameter."""
    for internal in internal_names:
        if key.startswith(internal + "_"):
            return internal, key[len(internal) + 1:].rsplit("_", 1)[0]
    return None


def _accumulator_keys(optimizer, net):
    """{optimizer state key: (structured parameter name, accumulator name)}."""
    names = _param_names(net)
    internal = sorted(names, key=len, reverse=True)   # the longest name first: linear_1.w_0 is a prefix of no other
    keys = {}
    for key in optimizer.state_dict():
        split = _split_accumulator_key(key, internal)
        if split is not None:
            keys[key] = (names[split[0]], split[1])
    return keys


def fresh_accumulator_names(backend, cfg, *sizes, **facts):
    """{Paddle's accumulator name: (structured parameter name, accumulator)} of cfg's net and optimizer built as
    run.py builds them (``backend``, the PaddleBackend: build_model, then make_trainer) under a new name generator:
    the names a fresh process that builds the model first gives them, which
    ``optimizer.set_state_dict(paddle.load(pdopt))`` looks up. convert/'s torch2paddle writes its .pdopt under them."""
    with paddle.utils.unique_name.guard():
        net = backend.build_model(cfg, *sizes, **facts)
        with warnings.catch_warnings():   # AMP's "needs a GPU": the names are the same on either device
            warnings.simplefilter("ignore", RuntimeWarning)
            optimizer = backend.make_trainer(net, cfg).optimizer
        params = [p for p in net.parameters() if not p.stop_gradient]
        optimizer._create_accumulators(paddle.static.default_main_program().global_block(), params)
        return _accumulator_keys(optimizer, net)


def optimizer_state(optimizer, net):
    """Adam's accumulators keyed by structured parameter names (the .pdopt 'optimizer' entry)."""
    current = optimizer.state_dict()
    state = {}
    for key, (param, accumulator) in _accumulator_keys(optimizer, net).items():
        state.setdefault(param, {})[accumulator] = current[key].numpy()
    return {"framework": "paddle", "state": state}


def restore_optimizer_state(optimizer, net, state):
    """Load a saved Adam state: this project's Paddle one, or a torch one converted by formats.adam_state (moments
    transposed for Linear weights, the step turned into beta powers); returns False (and changes nothing) for
    anything else."""
    if adam_state.is_torch_adam(state):
        linear = linear_weight_names(net)
        params = {name: tuple(reversed(p.shape)) if name in linear else tuple(p.shape)
                  for name, p in net.named_parameters() if not p.stop_gradient}
        state = adam_state.torch_to_paddle(state, list(params), linear, (float(optimizer._beta1),
                                                                         float(optimizer._beta2)),
                                           torch_shapes=params)
    if not adam_state.is_paddle_adam(state):
        return False
    # Paddle creates accumulators at the first step under names it makes up then; create them now so the saved
    # values can be matched to their real names.
    params = [p for p in net.parameters() if not p.stop_gradient]
    optimizer._create_accumulators(paddle.static.default_main_program().global_block(), params)
    current = optimizer.state_dict()
    saved = state["state"]
    for key, (param, accumulator) in _accumulator_keys(optimizer, net).items():
        value = saved.get(param, {}).get(accumulator)
        if value is not None:
            current[key] = np.asarray(value)
    optimizer.set_state_dict(current)
    return True


def save_checkpoint(path, net, optimizer, epoch, lr_base, data_hashes=None):
    """<stem>.pdparams and <stem>.pdopt for ``path`` = <stem>.pdparams (or <stem>); ``data_hashes``
    ({'vocab_sha256', 'answers_sha256'}, core/data/fingerprints.py) go into the .pdopt."""
    stem = path[:-len(".pdparams")] if path.endswith(".pdparams") else path
    # the LSTM under both of paddle.nn.LSTM's names, as Paddle ports' files hold it (reading folds them back)
    params = layout.with_lstm_cell_aliases(
        layout.normalize_lstm_names({k: v.numpy() for k, v in net.state_dict().items()}))
    meta = {**adam_state.paddle_keys(optimizer_state(optimizer, net), _accumulator_keys(optimizer, net)),
            "epoch": int(epoch), "lr_base": float(lr_base), **(data_hashes or {})}

    def write_pair(params_tmp):
        def write_both(opt_tmp):
            paddle.save(params, params_tmp)
            paddle.save({**meta, **integrity.pdopt_checksums(meta, params_tmp)}, opt_tmp)
        atomic_save(stem + ".pdopt", write_both)        # renamed first
    atomic_save(stem + ".pdparams", write_pair)          # renamed last


def restore_sgd_state(optimizer, net, state):
    """Load a saved SGD-with-momentum state into paddle.optimizer.Momentum: this project's Paddle one, or a torch SGD
    one converted by formats.sgd_state (buffers transposed for Linear weights); returns False (and changes nothing)
    for anything else."""
    if sgd_state.kind(state) != "SGD":
        return False
    if state.get("framework") != "paddle":
        names = [name for name, p in net.named_parameters() if not p.stop_gradient]
        state = sgd_state.torch_to_paddle(state, names, linear_weight_names(net))
    return restore_optimizer_state(optimizer, net, state)
