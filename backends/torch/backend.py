"""The PyTorch backend: device, seeding, loaders, the trainer, prediction and checkpoints.

Mirrored in backends/paddle/backend.py (same functions, same order). Numpy arrays come in and go out; the trainer
follows the original train_engine: Adam with the learning rate the engine gives per step, the loss summed over
batch x answers, exact gradient accumulation over contiguous sub-batches, optional global-norm clipping.
"""
import os
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from backends.base import (
    Backend,
    Trainer,
    adam_settings,
    gradient_sync,
    input_keys,
    loss_weight,
    net_call,
    sgd_settings,
    sub_batches,
    summed,
    target_key,
)
from backends.torch import checkpoint, distributed, models
from core.distributed import GPUUnavailable, cores_per_process
from core.dropout_masks import STREAM as DROPOUT_MASKS
from formats import sgd_state


def collate(samples):
    """Sample dicts of numpy arrays -> a dict of batched tensors."""
    return {key: torch.from_numpy(np.stack([s[key] for s in samples])) for key in samples[0]}


def make_loss(cfg):
    """loss(pred, ans) per LOSS_FUNC with LOSS_REDUCTION ('sum': over batch x answers, not divided by the batch)."""
    reduction = cfg.LOSS_REDUCTION
    if cfg.LOSS_FUNC == "bce":
        fn = nn.BCEWithLogitsLoss(reduction=reduction)
        return lambda pred, ans: fn(pred, ans)
    if cfg.LOSS_FUNC == "kld":
        fn = nn.KLDivLoss(reduction=reduction)
        return lambda pred, ans: fn(F.log_softmax(pred, dim=1), ans)
    if cfg.LOSS_FUNC == "ce":
        fn = nn.CrossEntropyLoss(reduction=reduction)
        return lambda pred, ans: fn(pred, ans.reshape(-1))
    raise ValueError(f"LOSS_FUNC: unknown loss {cfg.LOSS_FUNC!r}; expected bce, kld or ce")


class TorchTrainer(Trainer):
    def __init__(self, net, cfg, device):
        self.net = net
        self.train_net = net   # what the steps run through: under a launcher the data-parallel wrapper
        self.row_offset = 0    # this rank's first row in each batch (backends/<fw>/distributed.py wrap)
        self.device = device
        self.sub_batch_size = cfg.SUB_BATCH_SIZE
        self.clip = float(cfg.GRAD_NORM_CLIP)
        self.params = [p for p in net.parameters() if p.requires_grad]
        self.opt = cfg.OPT
        if self.opt == "SGD":   # the ViT originals' SGD with momentum (mirrors paddle.optimizer.Momentum)
            self.sgd = sgd_settings(cfg)
            self.optimizer = torch.optim.SGD(self.params, lr=0.0, **self.sgd)
        else:
            self.adam = adam_settings(cfg)
            # On the CPU torch's default Adam updates one parameter at a time; the fused kernel is the same update in
            # one pass (results within an ulp), 2.4x faster for TRAR's 293 parameters (71 -> 30 ms a step).
            fused = device.type == "cpu" and all(p.dtype == torch.float32 for p in self.params) or None
            self.optimizer = torch.optim.Adam(self.params, lr=0.0, fused=fused, **self.adam)
        self.loss_fn = make_loss(cfg)
        self.loss_weight = loss_weight(cfg)
        self.cfg = cfg
        self.amp = bool(cfg.AMP) and device.type == "cuda"
        if cfg.AMP and not self.amp:
            warnings.warn("AMP: mixed precision needs a GPU; training in float32 on the CPU", RuntimeWarning,
                          stacklevel=3)
        self.scaler = torch.amp.GradScaler(device.type) if self.amp else None
        # What autocast runs in when self.amp; tests/test_mixed_precision.py points it at the CPU (bfloat16).
        self.autocast = {"device_type": device.type, "dtype": torch.float16}

    def train_step(self, batch, lr):
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        inputs = _to_device(batch, self.device, input_keys(batch) + (target_key(batch),))
        target = inputs[target_key(batch)]
        total = 0.0
        parts = sub_batches(len(target), self.sub_batch_size)
        for part in DROPOUT_MASKS.step_parts(parts, self.row_offset):
            with gradient_sync(self.train_net, last=part is parts[-1]):
                with torch.autocast(**self.autocast, enabled=self.amp):
                    pred = net_call(self.train_net, inputs, part)
                loss = self.loss_fn(pred.float(), target[part])
                weighted = loss * self.loss_weight if self.loss_weight != 1.0 else loss
                (self.scaler.scale(weighted) if self.amp else weighted).backward()
            total += summed(loss.item(), pred.shape[0], self.cfg)
        if self.clip > 0:
            if self.amp:
                self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        if self.amp:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return total

    def set_tau(self, tau):
        self.net.set_tau(tau)

    def save(self, path, epoch, lr_base, data_hashes=None):
        checkpoint.save_checkpoint(path, self.net, self.optimizer, epoch, lr_base, data_hashes)

    def load_optimizer_state(self, meta):
        state = (meta or {}).get("optimizer")
        if not state:
            return
        if self.opt == "SGD" or sgd_state.kind(state) == "SGD":
            if sgd_state.kind(state) != self.opt or not checkpoint.restore_sgd_state(self.optimizer, self.net, state):
                warnings.warn(f"the checkpoint's optimizer state is not {self.opt}'s (OPT); the optimizer state "
                              "restarts from zero", RuntimeWarning, stacklevel=2)
                return
            for group in self.optimizer.param_groups:   # the config's SGD settings win over the saved ones
                group.update(self.sgd)
            return
        if not checkpoint.restore_optimizer_state(self.optimizer, self.net, state):
            warnings.warn("the checkpoint's optimizer state is in a layout this backend does not know (neither "
                          "framework's Adam); Adam's moments restart from zero", RuntimeWarning, stacklevel=2)
            return
        for group in self.optimizer.param_groups:   # the config's Adam settings win over the saved ones
            group.update(self.adam)


def _to_device(batch, device, keys):
    out = {}
    for key in keys:
        value = batch[key]
        if not isinstance(value, torch.Tensor):
            value = np.ascontiguousarray(value)
            value = torch.from_numpy(value) if value.flags.writeable else torch.tensor(value)
        out[key] = value.to(device, non_blocking=True)
    return out


class TorchBackend(Backend):
    name = "torch"
    checkpoint_ext = ".pkl"
    distributed = distributed   # data-parallel training under a launcher (core/distributed.py)

    def __init__(self):
        self.device = torch.device("cpu")

    def seed(self, seed):
        torch.manual_seed(seed)   # seeds every CUDA device too
        DROPOUT_MASKS.reset(seed)

    def set_device(self, gpu=None):
        if "OMP_NUM_THREADS" not in os.environ:   # the cores, split among a launcher's processes on this machine
            torch.set_num_threads(cores_per_process())
        ids = [p.strip() for p in str(gpu or "").split(",") if p.strip()]
        if len(ids) > 1:
            raise ValueError(f"GPU: {gpu!r}; a process trains on one device (several: core/distributed.py)")
        if not ids:
            self.device = torch.device("cpu")
        elif not torch.cuda.is_available():
            raise GPUUnavailable(f"GPU: --GPU={gpu} but torch sees no CUDA device; leave --GPU out to train on the "
                                 "CPU, or --SET ALLOW_CPU_FALLBACK=True to fall back to it")
        else:
            self.device = torch.device(f"cuda:{ids[0]}")
            torch.cuda.set_device(self.device)
        return str(self.device)

    def build_model(self, cfg, *args, **facts):
        return models.build_net(cfg, *args, **facts).to(self.device)

    def load_checkpoint(self, net, path):
        return checkpoint.load_checkpoint(net, path)

    def predict(self, net, batch):
        was_training = net.training
        net.eval()
        try:
            with torch.no_grad():
                inputs = _to_device(batch, self.device, input_keys(batch))
                logits = net_call(net, inputs)
        finally:
            net.train(was_training)
        return logits.float().cpu().numpy()

    def make_loader(self, dataset, batch_sampler, num_workers=0, pin_memory=False):
        batches = [[int(i) for i in batch] for batch in batch_sampler]
        workers = max(0, min(int(num_workers), os.cpu_count() or 1))
        return torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=workers,
                                           pin_memory=bool(pin_memory) and self.device.type == "cuda",
                                           collate_fn=collate)

    def make_trainer(self, net, cfg):
        return TorchTrainer(net, cfg, self.device)

    def routing_alphas(self, net):
        return [a.detach().float().cpu().numpy() for a in net.routing_alphas()]


BACKEND_CLASS = TorchBackend
