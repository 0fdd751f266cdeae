"""A tiny image classifier registered for one test only (until the ViT models land), in both backends.

``register(tmp_path, monkeypatch)`` adds the model 'tiny_patch' (MODEL_USE 'tiny_patch') to the registry with a yml
for the generated image set, and its twin Nets as backends.<fw>.models.tiny_patch modules; the Net is a strided
patch convolution, a mean over the patches, LayerNorm and a Linear head (parameter names equal in both frameworks).
The yml is the ViT originals' recipe, scaled down: SGD momentum 0.9, warm-up then cosine by steps, clip 1, mean CE
over accumulated sub-batches.
"""
import sys
import types

from core import config, registry

MODEL = "tiny_patch"
DATASET = registry.generated_dataset("imagefolder")
YML = """MODEL_USE: tiny_patch
IMG_SIZE: 16
HIDDEN_SIZE: 24
LOSS_FUNC: ce
LOSS_REDUCTION: mean
OPT: SGD
OPT_PARAMS: {momentum: 0.9}
LR_BASE: 0.1
LR_SCHEDULE: cosine
WARMUP_STEPS: 4
LR_DECAY_LIST: []
GRAD_NORM_CLIP: 1.0
GRAD_ACCU_STEPS: 2
BATCH_SIZE: 20
MAX_EPOCH: 3
"""


def _torch_module():
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, cfg, num_classes):
            super().__init__()
            self.patch = nn.Conv2d(3, cfg.HIDDEN_SIZE, kernel_size=4, stride=4)
            self.norm = nn.LayerNorm(cfg.HIDDEN_SIZE, eps=1e-6)
            self.head = nn.Linear(cfg.HIDDEN_SIZE, num_classes)

        def forward(self, image):
            x = self.patch(image).flatten(2).mean(2)
            return self.head(self.norm(x))

    return types.SimpleNamespace(Net=Net, torch=torch)


def _paddle_module():
    import paddle
    from paddle import nn

    class Net(nn.Layer):
        def __init__(self, cfg, num_classes):
            super().__init__()
            self.patch = nn.Conv2D(3, cfg.HIDDEN_SIZE, kernel_size=4, stride=4)
            self.norm = nn.LayerNorm(cfg.HIDDEN_SIZE, epsilon=1e-6)
            self.head = nn.Linear(cfg.HIDDEN_SIZE, num_classes)

        def forward(self, image):
            x = self.patch(image).flatten(2).mean(2)
            return self.head(self.norm(x))

    return types.SimpleNamespace(Net=Net, paddle=paddle)


def register(tmp_path, monkeypatch, yml=YML, frameworks=("torch", "paddle")):
    """Settings for load_config: the model in the registry, its yml, its Net modules, the data under tmp_path."""
    monkeypatch.setitem(registry.MODELS, MODEL, registry.ModelSpec(
        MODEL, MODEL, task="classification", features="image", datasets=(DATASET,)))
    for fw in frameworks:
        maker = _torch_module if fw == "torch" else _paddle_module
        module = types.ModuleType(f"backends.{fw}.models.{MODEL}")
        module.Net = maker().Net
        monkeypatch.setitem(sys.modules, module.__name__, module)
    configs = tmp_path / "configs"
    (configs / DATASET).mkdir(parents=True)
    (configs / DATASET / f"{MODEL}.yml").write_text(yml)
    monkeypatch.setattr(config, "CONFIGS_DIR", str(configs))
    return {"RESULTS_ROOT": str(tmp_path / "results"), "CKPTS_ROOT": str(tmp_path / "ckpts"), "NUM_WORKERS": 0,
            "VERBOSE": False, "VERSION": "cls", "DATA_ROOT": str(tmp_path / "images")}


def small_demo_images(root):
    """The generated image set, small: 6 training and 2 validation images per class, 5 test images."""
    from core.data import demo_images
    return demo_images.generate(str(root), train_per_class=6, val_per_class=2, test_images=5)
