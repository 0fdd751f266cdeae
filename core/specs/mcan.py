"""MCAN (openvqa): no keys of its own; the generic network keys (LAYER, HIDDEN_SIZE, FLAT_*) are all it reads."""
DEFAULTS = {}


def validate(v, fail):
    pass
