"""The framework-neutral backend interface. Numpy arrays cross the boundary; tensors never leave a backend.

Also the few framework-neutral rules both trainers share, so the torch and paddle twins cannot drift apart.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from core import registry

if TYPE_CHECKING:
    import numpy as np

    from core.config import Config
    from core.data import Dataset

# A backend's model: a torch.nn.Module or a paddle.nn.Layer (backends/<fw>/models/<MODEL_USE>.py Net). Its tensors
# stay inside the backend; the interface below takes and gives numpy arrays.
Net = Any

# The VQA task's net inputs (core/registry.py TASKS holds every task's); deploy's exporters wrap VQA nets by them.
INPUT_KEYS = registry.TASKS["vqa"].input_keys
OPTIONAL_INPUT_KEYS = registry.TASKS["vqa"].optional_input_keys


def input_keys(batch):
    """The model-input keys present in ``batch``, per its task (the one whose positional inputs it holds): the
    positional ones in order, then any optional ones."""
    task = registry.task_for_batch(batch)
    keys = task.input_keys + tuple(k for k in task.optional_input_keys if k in batch)
    for key in keys:                    # numpy input from a user: the dtypes the datasets give (tensors are checked
        dtype = getattr(batch[key], "dtype", None)     # by the frameworks)
        want = task.input_dtypes[key]
        if type(batch[key]).__module__ == "numpy" and str(dtype) != want:
            raise ValueError(f"batch[{key!r}] is {dtype}; the model takes {want} (e.g. .astype(np.{want}))")
    return keys


def target_key(batch):
    """The training target's key of ``batch``'s task ('ans' for VQA, 'label' for classification)."""
    return registry.task_for_batch(batch).target_key


def net_call(net, inputs, part=slice(None)):
    """Call ``net`` on (a sub-batch of) the inputs: its task's positional keys in order, optional keys by name."""
    task = registry.task_for_batch(inputs)
    args = [inputs[k][part] for k in task.input_keys]
    kwargs = {k: inputs[k][part] for k in task.optional_input_keys if k in inputs}
    return net(*args, **kwargs)


def model_facts(cfg: Config, args: Sequence[Any] = (), facts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """build_model's dataset facts as keywords, in the model's task's order: the positional form
    (cfg, token_size, answer_size, pretrained_emb) and the keyword form give the same dict."""
    task = registry.task(registry.model_of(cfg).task)
    facts = dict(facts or {})
    if len(args) > len(task.facts):
        raise TypeError(f"build_model takes at most {len(task.facts)} facts ({', '.join(task.facts)}) for the "
                        f"{task.name} task, got {len(args)} positional")
    named = dict(zip(task.facts, args))
    for name in named:
        if name in facts:
            raise TypeError(f"build_model got two values for {name}")
    named.update(facts)
    unknown = [name for name in named if name not in task.facts]
    missing = [name for name in task.facts if name not in named and name not in task.fact_defaults]
    if unknown or missing:
        raise TypeError(f"build_model: a {task.name} model takes the facts {', '.join(task.facts)}"
                        + (f"; unknown {', '.join(unknown)}" if unknown else "")
                        + (f"; missing {', '.join(missing)}" if missing else ""))
    return {name: named[name] if name in named else task.fact_defaults[name] for name in task.facts}


def model_module(package, cfg):
    """``<package>.<MODEL_USE>`` (openvqa's convention: backends/<fw>/models/<MODEL_USE>.py defines Net), for a
    MODEL_USE of the registry only."""
    import importlib
    name = str(cfg.MODEL_USE).lower()
    if name not in registry.model_uses():
        raise ValueError(f"MODEL_USE {cfg.MODEL_USE!r} is not a model of this backend; expected one of "
                         f"{sorted(registry.model_uses())}")
    return importlib.import_module(f"{package}.{name}")


ADAM_KEYS = ("betas", "eps", "weight_decay", "amsgrad")
SGD_KEYS = ("momentum", "weight_decay", "nesterov")


class BackendUnavailable(ImportError):
    """The framework of a backend is not installed (or the name is unknown)."""


class Backend:
    name: str | None = None              # 'torch' | 'paddle'
    checkpoint_ext: str | None = None    # '.pkl' | '.pdparams'

    def seed(self, seed: int) -> None:
        raise NotImplementedError

    def set_device(self, gpu: str | None = None) -> str:
        """Run on the first of the GPU ids in ``gpu`` ('' or None: the CPU); returns the device's name, 'cpu' for
        the CPU. The device is kept in ``self.device``."""
        raise NotImplementedError

    def build_model(self, cfg: Config, *args: Any, **facts: Any) -> Net:
        """The Net of cfg.MODEL_USE on this backend's device, built from the dataset's facts: keywords
        (VQA: token_size, answer_size, pretrained_emb=None; classification: num_classes), or VQA's positional form
        build_model(cfg, token_size, answer_size, pretrained_emb). See model_facts."""
        raise NotImplementedError

    def load_checkpoint(self, net: Net, path: str) -> dict[str, Any]:
        """Load weights into ``net``; return {'epoch', 'lr_base', 'optimizer'} (None where absent)."""
        raise NotImplementedError

    def predict(self, net: Net, batch: Mapping[str, np.ndarray]) -> np.ndarray:
        """Eval-mode logits as float32 numpy (B, A) from a dict of numpy arrays."""
        raise NotImplementedError

    def make_loader(self, dataset: Dataset, batch_sampler: Sequence[Sequence[int]], num_workers: int = 0,
                    pin_memory: bool = False) -> Iterable[dict[str, Any]]:
        """The batches of ``batch_sampler`` (lists of sample indices, core.data.sampler), collated into the framework's
        tensors, read by ``num_workers`` worker processes (0: in this process)."""
        raise NotImplementedError

    def make_trainer(self, net: Net, cfg: Config) -> Trainer:
        raise NotImplementedError

    def routing_alphas(self, net: Net) -> list[np.ndarray]:
        """TRAR: the routing weights of the last forward, one float32 array (B, len(ORDERS)) per decoder layer."""
        raise NotImplementedError


class Trainer:
    def train_step(self, batch: Mapping[str, Any], lr: float) -> float:
        """One optimizer step over GRAD_ACCU_STEPS sub-batches at learning rate ``lr``; returns the summed loss."""
        raise NotImplementedError

    def set_tau(self, tau: float) -> None:
        raise NotImplementedError

    def save(self, path: str, epoch: int, lr_base: float, data_hashes: dict | None = None) -> None:
        """Write the checkpoint (atomic); ``data_hashes`` (core/data/fingerprints.py) are stored with it."""
        raise NotImplementedError

    def load_optimizer_state(self, meta: Mapping[str, Any]) -> None:
        raise NotImplementedError


def adam_settings(cfg: Config) -> dict[str, Any]:
    """torch-style Adam settings from cfg.OPT_PARAMS: {'betas': (b1, b2), 'eps', 'weight_decay', 'amsgrad'}."""
    params = dict(cfg.OPT_PARAMS)
    unknown = sorted(set(params) - set(ADAM_KEYS))
    if unknown:
        raise ValueError(f"OPT_PARAMS: unknown Adam setting {', '.join(unknown)}; "
                         f"expected some of {', '.join(ADAM_KEYS)}")
    betas = tuple(float(b) for b in params.get("betas", (0.9, 0.999)))
    if len(betas) != 2:
        raise ValueError(f"OPT_PARAMS.betas: expected two numbers, got {params['betas']!r}")
    return {"betas": betas, "eps": float(params.get("eps", 1e-8)),
            "weight_decay": float(params.get("weight_decay", 0.0)), "amsgrad": bool(params.get("amsgrad", False))}


def sgd_settings(cfg: Config) -> dict[str, Any]:
    """SGD-with-momentum settings from cfg.OPT_PARAMS (OPT 'SGD'): {'momentum', 'weight_decay', 'nesterov'}; the
    ViT originals' SGD(momentum=0.9, weight_decay=0) by default. No dampening: Paddle's Momentum has none."""
    params = dict(cfg.OPT_PARAMS)
    unknown = sorted(set(params) - set(SGD_KEYS))
    if unknown:
        raise ValueError(f"OPT_PARAMS: unknown SGD setting {', '.join(unknown)}; "
                         f"expected some of {', '.join(SGD_KEYS)}")
    return {"momentum": float(params.get("momentum", 0.9)), "weight_decay": float(params.get("weight_decay", 0.0)),
            "nesterov": bool(params.get("nesterov", False))}


def loss_weight(cfg: Config) -> float:
    """What each sub-batch's loss is multiplied by before backward: 1 for LOSS_REDUCTION 'sum'; 1 / GRAD_ACCU_STEPS
    for 'mean', so the accumulated gradient is the full batch's mean (the ViT originals divide by the accumulation
    steps; every shipped VQA config sums)."""
    return 1.0 / cfg.GRAD_ACCU_STEPS if cfg.LOSS_REDUCTION == "mean" else 1.0


def summed(loss_value: float, rows: int, cfg: Config) -> float:
    """A sub-batch's loss as the sum over its rows (train_step returns summed losses whatever LOSS_REDUCTION)."""
    return loss_value * rows if cfg.LOSS_REDUCTION == "mean" else loss_value


def sub_batches(batch_size: int, sub_batch_size: int) -> list[slice]:
    """Contiguous slices of SUB_BATCH_SIZE covering a batch: GRAD_ACCU_STEPS of them for a full batch."""
    return [slice(start, min(start + sub_batch_size, batch_size)) for start in range(0, batch_size, sub_batch_size)]


def gradient_sync(train_net: Net, last: bool):
    """The context a sub-batch's forward and backward run in: under data parallelism (a wrapper with ``no_sync``,
    backends/<fw>/distributed.py) the ranks' gradients are all-reduced only on the last sub-batch of a step."""
    no_sync = getattr(train_net, "no_sync", None)
    return contextlib.nullcontext() if last or no_sync is None else no_sync()
