"""Per-model settings, one module per MODEL_USE (openvqa's model_cfgs.py): the config keys the model adds, their
defaults, and the checks on them. core/registry.py names the module in each ModelSpec; core/config.py merges every
module's keys into the one set of known keys (so a config of any model holds them all, as before) and runs the
chosen model's ``validate`` after the generic checks.

A module may define (all optional):
    DEFAULTS   {KEY: default}            keys of this model; no two modules may give one key different defaults
    KINDS      {KEY: (type, ...)}        where the default does not tell the kind (None defaults)
    LIST_ITEMS {KEY: type}               item type of a list key
    AT_LEAST   {KEY: lower bound}
    CHOICES    {KEY: (allowed, ...)}
    derive(values, given)                keys computed from others before the checks, where the config does not
                                         give them (``given``: the keys set by a yml, --CONFIG or overrides)
    validate(values, fail)               cross-key checks on the merged values; fail(key, message) raises the
                                         one-line ConfigError naming the key and where it was set
"""


def validate(values, fail):
    """The settings of a model with no keys of its own (ModelSpec's default): nothing to check."""


def grid_rows(v, fail, model, why):
    """The image-token count of a model that lives on the IMG_SCALE x IMG_SCALE feature grid (TRAR, LSAT): its VQA
    features must be 'grid' (``why`` says what needs the grid) and FEAT_SIZE's rows IMG_SCALE squared."""
    fmt, scale = v["DATA_FORMAT"], v["IMG_SCALE"]
    if fmt == "vqa":
        if v["FEAT_TYPE"] != "grid":
            fail("FEAT_TYPE", f"{model} needs 'grid' features ({why})")
        name = "FRCN_FEAT_SIZE"
    else:
        name = "GRID_FEAT_SIZE"
    rows = v["FEAT_SIZE"][fmt][name][0]
    if rows != scale * scale:
        fail("IMG_SCALE", f"{scale}x{scale} grid needs FEAT_SIZE.{fmt}.{name} rows = {scale * scale}, got {rows}; "
                          f"set both IMG_SCALE and FEAT_SIZE")
    return rows
