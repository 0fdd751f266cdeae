"""Learning-rate and routing-temperature schedules, as pure functions of the step or epoch.

Both backends get their numbers from here, so they follow one schedule. Arithmetic is written in the original
order so thresholds and rates are the same floats.
"""
import math


def warmup_lr(step, lr_base, data_size, batch_size, warmup_epoch):
    """The openvqa WarmupOptimizer rate at 1-based optimizer ``step``.

    The first (W+1)/4, 2(W+1)/4, 3(W+1)/4 epochs (W = warmup_epoch; epoch = data_size / batch_size steps as a float,
    thresholds truncated to int) use 1/(W+1), 2/(W+1), 3/(W+1) of lr_base; later steps use lr_base. The formula is
    written for W = 3 (1/4, 2/4, 3/4); as in the original, another W gives other steps: W = 1 (the demo configs)
    runs 1/2, 1 and then 1.5 lr_base for half an epoch each before lr_base.
    """
    for k in (1, 2, 3):
        if step <= int(data_size / batch_size * (warmup_epoch + 1) * (0.25 * k)):
            return lr_base * k / (warmup_epoch + 1)
    return lr_base


def warmup_decay_factor(step, warmup_steps, total_steps, decay):
    """The ViT originals' LambdaLR factor (utils/scheduler.py WarmupCosineSchedule / WarmupLinearSchedule) at
    1-based optimizer ``step``: step / warmup during the warm-up, then 'cosine' 0.5 (1 + cos(pi progress)) or
    'linear' (total - step) / (total - warmup) down to 0 at ``total_steps``, never below 0. The originals call
    scheduler.step() before optimizer.step(), so update n uses the factor of n."""
    if step < warmup_steps:
        return float(step) / float(max(1.0, warmup_steps))
    if decay == "cosine":
        progress = float(step - warmup_steps) / float(max(1, total_steps - warmup_steps))
        return max(0.0, 0.5 * (1. + math.cos(math.pi * 0.5 * 2.0 * progress)))   # cycles = 0.5, as the original
    if decay == "linear":
        return max(0.0, float(total_steps - step) / float(max(1.0, total_steps - warmup_steps)))
    raise ValueError(f"LR_SCHEDULE: {decay!r} is not one of cosine, linear")


def step_lr(step, lr_base, warmup_steps, total_steps, decay):
    """lr_base times warmup_decay_factor (LambdaLR's base_lr * lambda(step))."""
    return lr_base * warmup_decay_factor(step, warmup_steps, total_steps, decay)


def decayed_lr_base(lr_base, epoch, decay_list, decay_r):
    """lr_base in 0-based ``epoch``: multiplied by decay_r once at the start of each listed epoch <= epoch."""
    for listed in sorted(set(decay_list)):
        if listed <= epoch:
            lr_base *= decay_r
    return lr_base


def tau_at(epoch, policy, tau_max, tau_min, max_epoch, warmup_epoch):
    """Gumbel-softmax temperature set at the start of 0-based ``epoch`` (TRAR hard routing).

    0 slow: linear from tau_max to tau_min over the run. 1 fast: tau_max to 1 over the warmup, then down to
    1/(max_epoch - warmup_epoch) at the last epoch. 2 finetune: 1 - (epoch - max_epoch)/(warmup_epoch + 1) during the
    warmup, then 0.1. Policies 1 and 2 ignore tau_min, as the original does.
    """
    if policy == 0:
        if max_epoch == 1:
            return tau_max
        return tau_max - (tau_max - tau_min) * epoch / (max_epoch - 1)
    if policy == 1:
        if epoch < warmup_epoch:
            return tau_max - (tau_max - 1) * epoch / warmup_epoch
        return 1 - (epoch - warmup_epoch) / (max_epoch - warmup_epoch)
    if policy == 2:
        if epoch < warmup_epoch:
            return 1 - (epoch - max_epoch) / (warmup_epoch + 1)
        return 0.1
    raise ValueError(f"TAU_POLICY: {policy!r} is not one of 0, 1, 2")
