"""The PaddlePaddle backend: device, seeding, loaders, the trainer, prediction and checkpoints.

Mirror of backends/torch/backend.py (same functions, same order). Numpy arrays come in and go out; the trainer
follows the original train_engine: Adam with the learning rate the engine gives per step, the loss summed over
batch x answers, exact gradient accumulation over contiguous sub-batches, optional global-norm clipping with torch's
formula (coef = max_norm / (norm + 1e-6), applied when below 1).
"""
import os
import warnings

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

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
from backends.paddle import checkpoint, cpu_ops, distributed, models
from core.distributed import GPUUnavailable
from core.dropout_masks import STREAM as DROPOUT_MASKS
from formats import sgd_state


def collate(samples):
    """Sample dicts of numpy arrays -> a dict of batched arrays (paddle's DataLoader turns them into tensors)."""
    return {key: np.stack([s[key] for s in samples]) for key in samples[0]}


def make_loss(cfg):
    """loss(pred, ans) per LOSS_FUNC with LOSS_REDUCTION ('sum': over batch x answers, not divided by the batch)."""
    reduction = cfg.LOSS_REDUCTION
    if cfg.LOSS_FUNC == "bce":
        fn = nn.BCEWithLogitsLoss(reduction=reduction)
        return lambda pred, ans: fn(pred, ans)
    if cfg.LOSS_FUNC == "kld":
        fn = nn.KLDivLoss(reduction=reduction)
        return lambda pred, ans: fn(F.log_softmax(pred, axis=1), ans)
    if cfg.LOSS_FUNC == "ce":
        fn = nn.CrossEntropyLoss(reduction=reduction)
        return lambda pred, ans: fn(pred, ans.reshape([-1]))
    raise ValueError(f"LOSS_FUNC: unknown loss {cfg.LOSS_FUNC!r}; expected bce, kld or ce")


class PaddleTrainer(Trainer):
    def __init__(self, net, cfg, device):
        self.net = net
        self.train_net = net   # what the steps run through: under a launcher the data-parallel wrapper
        self.row_offset = 0    # this rank's first row in each batch (backends/<fw>/distributed.py wrap)
        self.device = device
        self.sub_batch_size = cfg.SUB_BATCH_SIZE
        self.clip = float(cfg.GRAD_NORM_CLIP)
        self.params = [p for p in net.parameters() if not p.stop_gradient]
        self.opt = cfg.OPT
        if self.opt == "SGD":   # the ViT originals' SGD with momentum (mirrors torch.optim.SGD)
            sgd = sgd_settings(cfg)
            self.optimizer = paddle.optimizer.Momentum(
                learning_rate=0.0, momentum=sgd["momentum"], parameters=self.params, use_nesterov=sgd["nesterov"],
                weight_decay=sgd["weight_decay"] or None)
        else:
            adam = adam_settings(cfg)
            self.optimizer = paddle.optimizer.Adam(
                learning_rate=0.0, beta1=adam["betas"][0], beta2=adam["betas"][1], epsilon=adam["eps"],
                parameters=self.params, weight_decay=adam["weight_decay"] or None, amsgrad=adam["amsgrad"])
        self.loss_fn = make_loss(cfg)
        self.loss_weight = loss_weight(cfg)
        self.cfg = cfg
        self.amp = bool(cfg.AMP) and device.startswith("gpu")
        if cfg.AMP and not self.amp:
            warnings.warn("AMP: mixed precision needs a GPU; training in float32 on the CPU", RuntimeWarning,
                          stacklevel=3)
        self.scaler = paddle.amp.GradScaler() if self.amp else None

    def train_step(self, batch, lr):
        self.optimizer.set_lr(lr)
        self.net.train()
        self.optimizer.clear_grad(set_to_zero=False)
        inputs = _to_device(batch, self.device, input_keys(batch) + (target_key(batch),))
        target = inputs[target_key(batch)]
        total = 0.0
        parts = sub_batches(target.shape[0], self.sub_batch_size)
        for part in DROPOUT_MASKS.step_parts(parts, self.row_offset):
            with gradient_sync(self.train_net, last=part is parts[-1]):
                with paddle.amp.auto_cast(enable=self.amp, dtype="float16"):
                    pred = net_call(self.train_net, inputs, part)
                loss = self.loss_fn(pred.astype("float32"), target[part])
                weighted = loss * self.loss_weight if self.loss_weight != 1.0 else loss
                (self.scaler.scale(weighted) if self.amp else weighted).backward()
            total += summed(float(loss), pred.shape[0], self.cfg)
        if self.clip > 0:
            if self.amp:
                self.scaler.unscale_(self.optimizer)
            cpu_ops.clip_grad_norm(self.params, self.clip)
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
        if not checkpoint.restore_optimizer_state(self.optimizer, self.net, state):
            warnings.warn("the checkpoint's optimizer state is in a layout this backend does not know (neither "
                          "framework's Adam); Adam's moments restart from zero", RuntimeWarning, stacklevel=2)


def _to_device(batch, device, keys):
    out = {}
    on_gpu = device.startswith("gpu")
    for key in keys:
        value = batch[key]
        if not isinstance(value, paddle.Tensor):
            value = paddle.to_tensor(np.ascontiguousarray(value))
        elif on_gpu and not value.place.is_gpu_place():
            value = value.cuda()
        out[key] = value
    return out


class PaddleBackend(Backend):
    name = "paddle"
    checkpoint_ext = ".pdparams"
    distributed = distributed   # data-parallel training under a launcher (core/distributed.py)

    def __init__(self):
        self.device = "cpu"

    def seed(self, seed):
        paddle.seed(seed)
        DROPOUT_MASKS.reset(seed)

    def set_device(self, gpu=None):
        # Thread counts are set in backends/paddle/__init__.py: paddle reads them when it is imported.
        ids = [p.strip() for p in str(gpu or "").split(",") if p.strip()]
        if len(ids) > 1:
            raise ValueError(f"GPU: {gpu!r}; a process trains on one device (several: core/distributed.py)")
        if not ids:
            self.device = "cpu"
        elif not paddle.device.is_compiled_with_cuda() or paddle.device.cuda.device_count() == 0:
            raise GPUUnavailable(f"GPU: --GPU={gpu} but paddle sees no CUDA device; leave --GPU out to train on the "
                                 "CPU, or --SET ALLOW_CPU_FALLBACK=True to fall back to it")
        else:
            self.device = f"gpu:{ids[0]}"
        paddle.set_device(self.device)
        return self.device

    def build_model(self, cfg, *args, **facts):
        return models.build_net(cfg, *args, **facts)   # built on the current device

    def load_checkpoint(self, net, path):
        return checkpoint.load_checkpoint(net, path)

    def predict(self, net, batch):
        was_training = net.training
        net.eval()
        try:
            with paddle.no_grad():
                inputs = _to_device(batch, self.device, input_keys(batch))
                logits = net_call(net, inputs)
        finally:
            if was_training:
                net.train()
        return logits.astype("float32").numpy()

    def make_loader(self, dataset, batch_sampler, num_workers=0, pin_memory=False):
        # pin_memory: paddle's DataLoader chooses pinned memory itself when it feeds a GPU.
        batches = [[int(i) for i in batch] for batch in batch_sampler]
        workers = max(0, min(int(num_workers), os.cpu_count() or 1))
        return paddle.io.DataLoader(dataset, batch_sampler=batches, num_workers=workers, collate_fn=collate)

    def make_trainer(self, net, cfg):
        return PaddleTrainer(net, cfg, self.device)

    def routing_alphas(self, net):
        return [a.astype("float32").numpy() for a in net.routing_alphas()]


BACKEND_CLASS = PaddleBackend
