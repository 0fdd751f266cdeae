"""Data-parallel training on paddle.distributed: the process group, paddle.DataParallel and the collectives the
engine uses (core/distributed.py says what is sharded and why).

Mirror of backends/torch/distributed.py (same functions, same order).
"""
import hashlib
import os

import numpy as np
import paddle
import paddle.distributed as dist

from core.distributed import TIMEOUT_S, first_row, loss_scale


def start(where, device):
    """Join the launcher's process group: NCCL on a GPU, gloo on the CPU, collectives failing after TIMEOUT_S
    (paddle reads both from the environment; the launcher sets gloo itself only on a machine without a GPU)."""
    if not device.startswith("gpu"):
        os.environ["PADDLE_DISTRI_BACKEND"] = "gloo"
    os.environ.setdefault("PADDLE_PG_TIMEOUT", str(TIMEOUT_S * 1000))   # milliseconds
    dist.init_parallel_env()


def wrap(trainer, cfg, where):
    """Make ``trainer`` train its rank's slice of each batch: steps run through paddle.DataParallel (gradients
    averaged over the ranks; no_sync on all but the last sub-batch), the loss scaled by loss_scale, the dropout masks
    keyed from this rank's first row. The trainer's ``net`` stays the plain model (saved, evaluated, set_tau)."""
    # Every parameter is used in every step by today's models; paddle with an unused one diverges silently, which
    # finish()'s checksum comparison (core/distributed.py) would report.
    trainer.train_net = paddle.DataParallel(trainer.net, find_unused_parameters=False)
    trainer.sub_batch_size = cfg.SUB_BATCH_SIZE // where.size
    trainer.loss_weight *= loss_scale(cfg, where)
    trainer.row_offset = first_row(cfg, where)
    return trainer


def seed_device(seed):
    """Reseed the framework's generator only (not core.dropout_masks' stream): its GPU dropout."""
    paddle.seed(seed)


def barrier():
    dist.barrier()


def broadcast_object(value):
    """Rank 0's ``value`` on every rank."""
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(value):
    """[rank 0's value, rank 1's, ...] on every rank."""
    out = []
    dist.all_gather_object(out, value)
    return out


def parameter_checksum(net):
    """sha256 of the parameters' float32 bytes, in the layer's order (equal on every rank that holds equal weights)."""
    digest = hashlib.sha256()
    for name, param in net.named_parameters():
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(param.astype("float32").numpy()).tobytes())
    return digest.hexdigest()


def finish():
    if dist.is_initialized():
        dist.destroy_process_group()
