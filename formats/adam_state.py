"""Adam's state between torch and Paddle, as numpy: the moments keep their values, only keys and layouts change.

torch (``Adam.state_dict()``, the openvqa container's 'optimizer'):
    {'state': {key: {'step', 'exp_avg', 'exp_avg_sq'[, 'max_exp_avg_sq']}},
     'param_groups': [{'lr', 'betas', 'eps', 'weight_decay', 'amsgrad', ..., 'params': [key, ...]}]}
  Keys are positions in the optimizer's parameter list (torch 0.4 files use python ids instead); either way the
  flattened 'params' lists give the order, and the model's parameter order (convert.manifest) gives the names.
Paddle (this project's .pdopt 'optimizer' entry, backends/paddle/checkpoint.py):
    {'framework': 'paddle', 'state': {structured name: {'moment1', 'moment2', 'beta1_pow_acc', 'beta2_pow_acc'
                                                        [, 'moment2_max']}}}
The update rules are the same: moment1 = exp_avg, moment2 = exp_avg_sq, moment2_max = max_exp_avg_sq. A moment has
its parameter's layout, so a Linear weight's moments transpose with the weight. The step lives in the beta powers:
Paddle stores the power the *next* update's bias correction uses and multiplies it by beta after each update, so
after ``step`` updates beta1_pow_acc = beta1 ** (step + 1) (measured on paddle 3.3.1: 0.9 ** 4 after 3 steps).
"""
import math

import numpy as np

from formats import layout
from formats.layout import CheckpointMismatch

# (torch name, paddle name)
MOMENTS = (("exp_avg", "moment1"), ("exp_avg_sq", "moment2"), ("max_exp_avg_sq", "moment2_max"))
BETA_POWS = ("beta1_pow_acc", "beta2_pow_acc")
# Below this a float32 beta power has lost precision (denormals come at 1.2e-38) or underflowed to 0; from there on
# every bias correction is 1 in float32, so any later step is equivalent.
_PRECISE_POW = 1e-30


def is_torch_adam(state):
    """A torch Adam state_dict: every param group has betas (an SGD one, as ViT's train script saves, has momentum
    buffers instead of moments and no betas)."""
    return isinstance(state, dict) and isinstance(state.get("state"), dict) and \
        isinstance(state.get("param_groups"), list) and \
        all(isinstance(g, dict) and "betas" in g for g in state["param_groups"])


def is_paddle_adam(state):
    return isinstance(state, dict) and state.get("framework") == "paddle" and isinstance(state.get("state"), dict)


def torch_betas(state):
    """The betas of a torch Adam state's param groups (one pair, or several if the groups differ)."""
    return sorted({tuple(float(b) for b in g.get("betas", ())) for g in state["param_groups"]})


def _step_of(value, name):
    try:
        step = float(np.asarray(value).reshape(()))
    except (TypeError, ValueError):
        raise CheckpointMismatch(f"optimizer state of {name}: 'step' must be a number, got {value!r}") from None
    if not (step >= 0 and step == round(step)):
        raise CheckpointMismatch(f"optimizer state of {name}: 'step' must be a whole number >= 0, got {step}")
    return int(step)


def _check_shape(value, name, shape, what):
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise CheckpointMismatch(f"optimizer state {what} of {name} has shape {tuple(value.shape)}, the parameter "
                                 f"{tuple(shape)}: the optimizer's parameter order does not match this model")


def _layout(value, name, linear_keys):
    """A moment in its parameter's other layout: the weights' rule (formats.layout), so both always agree."""
    value = np.asarray(value)
    return layout.to_paddle_layout({name: value}, linear_keys)[name] if name in linear_keys else value


def torch_steps(state):
    """The 'step' of every entry of a torch Adam state."""
    return [_step_of(entry.get("step", 0), key) for key, entry in state["state"].items() if entry]


def torch_to_paddle(state, param_names, linear_keys, betas, torch_shapes=None, consume=False):
    """A torch Adam state_dict -> this project's Paddle optimizer entry; ``betas`` are the ones Paddle will go on with.

    ``param_names``: the model's trainable parameters in optimizer order; ``torch_shapes`` ({name: shape}, torch
    layout) lets each moment's shape be checked against its parameter. ``consume=True`` removes each entry from
    ``state`` once converted, so a large state is never held twice.
    """
    keys = [key for group in state["param_groups"] for key in group.get("params", [])]
    if len(keys) != len(param_names):
        raise CheckpointMismatch(f"the optimizer state covers {len(keys)} parameters, the model has "
                                 f"{len(param_names)}; it was saved for another model (convert with --weights-only "
                                 f"to restart Adam)")
    saved = state["state"]
    out = {}
    for key, name in zip(keys, param_names):
        entry = saved.pop(key, None) if consume else saved.get(key)
        if not entry:
            continue                      # a parameter that never had a gradient has no state
        step = _step_of(entry.get("step", 0), name)
        acc = {}
        for torch_name, paddle_name in MOMENTS:
            if entry.get(torch_name) is not None:
                value = np.asarray(entry[torch_name])
                _check_shape(value, name, (torch_shapes or {}).get(name), torch_name)
                acc[paddle_name] = _layout(value, name, linear_keys)
        for pow_name, beta in zip(BETA_POWS, betas):
            acc[pow_name] = np.array([float(beta) ** (step + 1)], np.float32)
        out[name] = acc
    return {"framework": "paddle", "state": out}


def step_from_beta_pows(acc, betas, name):
    """The number of updates behind a Paddle accumulator dict, from its beta powers (beta ** (step + 1))."""
    estimates = []
    for pow_name, beta in zip(BETA_POWS, betas):
        if acc.get(pow_name) is None or not 0.0 < beta < 1.0:
            continue
        value = float(np.asarray(acc[pow_name], np.float64).reshape(-1)[0])
        if not value <= 1.0 + 1e-6:
            raise CheckpointMismatch(f"optimizer state of {name}: {pow_name} = {value} is not a power of beta "
                                     f"{beta} (must be in [0, 1])")
        if value >= _PRECISE_POW:
            estimates.append((abs(math.log(beta)), math.log(value) / math.log(beta) - 1.0, pow_name))
    if not estimates:
        # Both powers underflowed: every later step gives the same float32 updates; take the first such step.
        slowest = max((b for b in betas if 0.0 < b < 1.0), default=None)
        if slowest is None:
            raise CheckpointMismatch(f"optimizer state of {name}: no beta power to read the step from")
        return math.ceil(math.log(_PRECISE_POW) / math.log(slowest))
    estimates.sort(reverse=True)   # the faster-decaying power resolves the step best
    step = round(estimates[0][1])
    for _, estimate, pow_name in estimates:
        if abs(estimate - step) > 0.25 + 1e-4 * step:
            raise CheckpointMismatch(
                f"optimizer state of {name}: {pow_name} gives step {estimate:.2f}, not a whole step consistent with "
                f"the other power ({step}); are OPT_PARAMS betas {tuple(betas)} the ones the run trained with?")
    return max(0, step)


def default_param_group(betas, eps=1e-8, weight_decay=0.0, amsgrad=False, lr=0.0):
    """A torch Adam param group; the trainer overwrites betas/eps/weight_decay/amsgrad from the config on resume."""
    return {"lr": float(lr), "betas": tuple(float(b) for b in betas), "eps": float(eps),
            "weight_decay": float(weight_decay), "amsgrad": bool(amsgrad), "maximize": False, "foreach": None,
            "capturable": False, "differentiable": False, "fused": None}


def paddle_to_torch(state, param_names, linear_keys, betas, group=None, torch_shapes=None, consume=False):
    """This project's Paddle optimizer entry -> a torch Adam state_dict (numpy values; 'step' a float32 scalar).

    ``group``: the settings of the single param group (default_param_group(betas) if None); its 'params' become the
    positions 0..n-1 of ``param_names``. ``consume=True`` empties ``state['state']`` as it goes.
    """
    saved = state["state"]
    unknown = [name for name in saved if name not in set(param_names)]
    if unknown:
        raise CheckpointMismatch(f"the optimizer state has entries for {len(unknown)} names the model lacks "
                                 f"({', '.join(unknown[:3])}); it was saved for another model (convert with "
                                 f"--weights-only to restart Adam)")
    out = {}
    for index, name in enumerate(param_names):
        acc = saved.pop(name, None) if consume else saved.get(name)
        if not acc:
            continue
        entry = {"step": np.array(float(step_from_beta_pows(acc, betas, name)), np.float32)}
        for torch_name, paddle_name in MOMENTS:
            if acc.get(paddle_name) is not None:
                value = _layout(acc[paddle_name], name, linear_keys)
                _check_shape(value, name, (torch_shapes or {}).get(name), paddle_name)
                entry[torch_name] = value
        out[index] = entry
    group = dict(group if group is not None else default_param_group(betas))
    group["params"] = list(range(len(param_names)))
    return {"state": out, "param_groups": [group]}


# ------------------------------------------------------------------- a .pdopt that paddle's set_state_dict accepts
# The .pdopt holds Paddle's own state_dict entries ({accumulator name: array}, e.g. 'linear_3.w_0_moment1_0') at its
# top level, as ``paddle.save(optimizer.state_dict(), ...)`` writes them, so ``optimizer.set_state_dict(paddle.load(
# path))`` takes it directly; under PADDLE_NAMES_KEY, which set_state_dict never looks up, the structured parameter
# name and accumulator of each, from which this project rebuilds its 'optimizer' entry (paddle_entry) and so reads
# these files like those before them, which held that entry itself.
PADDLE_NAMES_KEY = "paddle_accumulator_names"


def paddle_keys(entry, names):
    """The .pdopt's top-level accumulator entries of this project's Paddle optimizer entry (``entry``, as
    is_paddle_adam or sgd_state.kind accept) and PADDLE_NAMES_KEY: ``names`` is {Paddle's accumulator name:
    (structured parameter name, accumulator)} of the live optimizer (backends/paddle/checkpoint.py)."""
    out, table = {}, {}
    for key, (param, accumulator) in names.items():
        value = entry["state"].get(param, {}).get(accumulator)
        if value is not None:
            out[key] = np.asarray(value)
            table[key] = [param, accumulator]
    return {**out, PADDLE_NAMES_KEY: table}


def paddle_entry(pdopt):
    """This project's Paddle optimizer entry {'framework': 'paddle', 'state': {...}} from a .pdopt's top-level
    accumulators (paddle_keys), or None when the .pdopt has no PADDLE_NAMES_KEY (one written before it)."""
    table = pdopt.get(PADDLE_NAMES_KEY) if isinstance(pdopt, dict) else None
    if not isinstance(table, dict):
        return None
    state = {}
    for key, names in table.items():
        if key not in pdopt or not isinstance(names, (list, tuple)) or len(names) != 2:
            raise CheckpointMismatch(f"{PADDLE_NAMES_KEY}: accumulator {key!r} is missing or not named as "
                                     "[parameter, accumulator]; the .pdopt is damaged")
        state.setdefault(str(names[0]), {})[str(names[1])] = pdopt[key]
    return {"framework": "paddle", "state": state}
