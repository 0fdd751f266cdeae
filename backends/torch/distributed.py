"""Data-parallel training on torch.distributed: the process group, DistributedDataParallel and the collectives the
engine uses (core/distributed.py says what is sharded and why).

Mirrored in backends/paddle/distributed.py (same functions, same order).
"""
import datetime
import hashlib

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from core.distributed import TIMEOUT_S, first_row, loss_scale


def start(where, device):
    """Join the launcher's process group: NCCL on a GPU, gloo on the CPU, collectives failing after TIMEOUT_S."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=where.rank, world_size=where.size,
                            timeout=datetime.timedelta(seconds=TIMEOUT_S))


def wrap(trainer, cfg, where):
    """Make ``trainer`` train its rank's slice of each batch: steps run through DistributedDataParallel (gradients
    averaged over the ranks; no_sync on all but the last sub-batch), the loss scaled by loss_scale, the dropout masks
    keyed from this rank's first row. The trainer's ``net`` stays the plain model (saved, evaluated, set_tau)."""
    device_ids = [trainer.device.index] if trainer.device.type == "cuda" else None
    # Every parameter is used in every step by today's models; find_unused_parameters would cost a graph walk a step.
    trainer.train_net = DistributedDataParallel(trainer.net, device_ids=device_ids, find_unused_parameters=False)
    trainer.sub_batch_size = cfg.SUB_BATCH_SIZE // where.size
    trainer.loss_weight *= loss_scale(cfg, where)
    trainer.row_offset = first_row(cfg, where)
    return trainer


def seed_device(seed):
    """Reseed the framework's generator only (not core.dropout_masks' stream): its GPU dropout."""
    torch.manual_seed(seed)   # every CUDA device's generator too


def barrier():
    dist.barrier()


def broadcast_object(value):
    """Rank 0's ``value`` on every rank."""
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(value):
    """[rank 0's value, rank 1's, ...] on every rank."""
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def parameter_checksum(net):
    """sha256 of the parameters' float32 bytes, in the module's order (equal on every rank that holds equal weights)."""
    digest = hashlib.sha256()
    for name, param in net.named_parameters():
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(param.detach().float().cpu().numpy()).tobytes())
    return digest.hexdigest()


def finish():
    if dist.is_initialized():
        dist.destroy_process_group()
