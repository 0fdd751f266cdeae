"""ViT (rentainhe/ViT.pytorch): the image and patch sizes, attention dropout and classifier; sizes of the original's
configs (models/configs.py) as PRESETS.

The network keys are the generic openvqa names for the original's values: HIDDEN_SIZE (hidden_size), FF_SIZE
(mlp_dim), MULTI_HEAD (num_heads), LAYER (num_layers), DROPOUT_R (dropout_rate); ATTN_DROPOUT_R is
attention_dropout_rate. IMG_SCALE, the patches per side, is derived as IMG_SIZE / PATCH_SIZE (the original's
img_scale, which its user had to set by hand); a value given must agree.
"""
# IMG_SIZE (224) is a generic key (core/config.py): the image datasets resize to it
DEFAULTS = {"PATCH_SIZE": 16, "ATTN_DROPOUT_R": 0.0, "CLASSIFIER": "token"}
AT_LEAST = {"PATCH_SIZE": 1, "ATTN_DROPOUT_R": 0.0}
CHOICES = {"CLASSIFIER": ("token",)}

# The original's configs (reference A.2): name -> keys. Every one has CLASSIFIER token, ATTN_DROPOUT_R 0.0 and
# DROPOUT_R 0.1; IMG_SIZE 224 or 384 is the run's choice.
PRESETS = {
    "B_16": {"PATCH_SIZE": 16, "HIDDEN_SIZE": 768, "FF_SIZE": 3072, "MULTI_HEAD": 12, "LAYER": 12},
    "B_32": {"PATCH_SIZE": 32, "HIDDEN_SIZE": 768, "FF_SIZE": 3072, "MULTI_HEAD": 12, "LAYER": 12},
    "L_16": {"PATCH_SIZE": 16, "HIDDEN_SIZE": 1024, "FF_SIZE": 4096, "MULTI_HEAD": 16, "LAYER": 24},
    "L_32": {"PATCH_SIZE": 32, "HIDDEN_SIZE": 1024, "FF_SIZE": 4096, "MULTI_HEAD": 16, "LAYER": 24},
    "H_14": {"PATCH_SIZE": 14, "HIDDEN_SIZE": 1280, "FF_SIZE": 5120, "MULTI_HEAD": 16, "LAYER": 32},
}


def preset(name, img_size=224, **overrides):
    """The config keys of an original config (PRESETS) at ``img_size``, e.g. preset('B_16', 384)."""
    if name not in PRESETS:
        raise ValueError(f"ViT preset {name!r} is unknown; expected one of {', '.join(PRESETS)}")
    return {**PRESETS[name], "IMG_SIZE": img_size, "DROPOUT_R": 0.1, "ATTN_DROPOUT_R": 0.0, "CLASSIFIER": "token",
            **overrides}


def derive(v, given):
    """IMG_SCALE = IMG_SIZE / PATCH_SIZE unless the config gives it (validate then checks that it agrees)."""
    if "IMG_SCALE" not in given and v["PATCH_SIZE"] >= 1:
        v["IMG_SCALE"] = v["IMG_SIZE"] // v["PATCH_SIZE"]


def validate(v, fail):
    size, patch, scale = v["IMG_SIZE"], v["PATCH_SIZE"], v["IMG_SCALE"]
    if size % patch:
        fail("IMG_SIZE", f"{size} is not divisible by PATCH_SIZE={patch} (the patches tile the image)")
    if scale != size // patch:
        fail("IMG_SCALE", f"{scale} does not match IMG_SIZE / PATCH_SIZE = {size} / {patch} = {size // patch} "
                          "(the patches per side); leave it out, it is derived")
    if not v["ATTN_DROPOUT_R"] < 1:
        fail("ATTN_DROPOUT_R", f"must be below 1, got {v['ATTN_DROPOUT_R']}")
