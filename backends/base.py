"""The framework-neutral backend interface. Numpy arrays cross the boundary; tensors never leave a backend.

Also the few framework-neutral rules both trainers share, so the torch and paddle twins cannot drift apart.
"""

# Net.forward's arguments, in order (docs/architecture.md, sample format); 'ans' is the training target.
INPUT_KEYS = ("frcn_feat", "grid_feat", "bbox_feat", "ques_ix")
# Inputs that some models take by keyword when the dataset provides them (MMNasNet's box geometry from core.geometry).
OPTIONAL_INPUT_KEYS = ("rel_geom",)


def input_keys(batch):
    """The model-input keys present in ``batch``: the four positional ones, then any optional ones."""
    missing = [k for k in INPUT_KEYS if k not in batch]
    if missing:
        raise ValueError(f"the batch has no {', '.join(missing)}: a model takes {', '.join(INPUT_KEYS)} (zeros of "
                         "shape (B, 1) for the features it does not read; docs/architecture.md, the sample format)")
    keys = INPUT_KEYS + tuple(k for k in OPTIONAL_INPUT_KEYS if k in batch)
    for key in keys:                    # numpy input from a user: the dtypes the datasets give (tensors are checked
        dtype = getattr(batch[key], "dtype", None)     # by the frameworks)
        want = "int64" if key == "ques_ix" else "float32"
        if type(batch[key]).__module__ == "numpy" and str(dtype) != want:
            raise ValueError(f"batch[{key!r}] is {dtype}; the model takes {want} (e.g. .astype(np.{want}))")
    return keys


def net_call(net, inputs, part=slice(None)):
    """Call ``net`` on (a sub-batch of) the inputs: positional keys in order, optional keys by name."""
    args = [inputs[k][part] for k in INPUT_KEYS]
    kwargs = {k: inputs[k][part] for k in OPTIONAL_INPUT_KEYS if k in inputs}
    return net(*args, **kwargs)
ADAM_KEYS = ("betas", "eps", "weight_decay", "amsgrad")


class BackendUnavailable(ImportError):
    """The framework of a backend is not installed (or the name is unknown)."""


class Backend:
    name = None
    checkpoint_ext = None

    def seed(self, seed):
        raise NotImplementedError

    def set_device(self, gpu=None):
        """Run on the first of the GPU ids in ``gpu`` ('' or None: the CPU); returns the device's name, 'cpu' for
        the CPU. The device is kept in ``self.device``."""
        raise NotImplementedError

    def build_model(self, cfg, token_size, answer_size, pretrained_emb=None):
        raise NotImplementedError

    def load_checkpoint(self, net, path):
        """Load weights into ``net``; return {'epoch', 'lr_base', 'optimizer'} (None where absent)."""
        raise NotImplementedError

    def predict(self, net, batch):
        """Eval-mode logits as float32 numpy (B, A) from a dict of numpy arrays."""
        raise NotImplementedError

    def make_loader(self, dataset, batch_sampler, num_workers=0, pin_memory=False):
        raise NotImplementedError

    def make_trainer(self, net, cfg):
        raise NotImplementedError

    def routing_alphas(self, net):
        """TRAR: the routing weights of the last forward, one float32 array (B, len(ORDERS)) per decoder layer."""
        raise NotImplementedError


class Trainer:
    def train_step(self, batch, lr):
        """One optimizer step over GRAD_ACCU_STEPS sub-batches at learning rate ``lr``; returns the summed loss."""
        raise NotImplementedError

    def set_tau(self, tau):
        raise NotImplementedError

    def save(self, path, epoch, lr_base):
        raise NotImplementedError

    def load_optimizer_state(self, meta):
        raise NotImplementedError


def adam_settings(cfg):
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


def sub_batches(batch_size, sub_batch_size):
    """Contiguous slices of SUB_BATCH_SIZE covering a batch: GRAD_ACCU_STEPS of them for a full batch."""
    return [slice(start, min(start + sub_batch_size, batch_size)) for start in range(0, batch_size, sub_batch_size)]
