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
