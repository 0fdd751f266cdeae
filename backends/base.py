"""The framework-neutral backend interface. Numpy arrays cross the boundary; tensors never leave a backend."""


class BackendUnavailable(ImportError):
    """The framework of a backend is not installed (or the name is unknown)."""


class Backend:
    name = None
    checkpoint_ext = None

    def seed(self, seed):
        raise NotImplementedError

    def set_device(self, gpu=None):
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
