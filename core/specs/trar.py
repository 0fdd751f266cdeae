"""TRAR (routing over attention spans on the image grid): routing keys, defaults from the TRAR vqa yml."""
from core.specs import grid_rows

DEFAULTS = {
    "ORDERS": [0, 1, 2, 3], "IMG_SCALE": 8, "ROUTING": "soft", "POOLING": "avg", "TAU_POLICY": 1,
    "TAU_MAX": 10.0, "TAU_MIN": 0.1, "BINARIZE": False,
}
LIST_ITEMS = {"ORDERS": int}
AT_LEAST = {"IMG_SCALE": 1, "TAU_MIN": 0.0}
CHOICES = {"ROUTING": ("soft", "hard"), "POOLING": ("avg", "attention", "fc"), "TAU_POLICY": (0, 1, 2)}


def validate(v, fail):
    orders, scale = v["ORDERS"], v["IMG_SCALE"]
    if not orders or len(set(orders)) != len(orders):
        fail("ORDERS", f"expected a non-empty list of distinct integers, got {orders!r}")
    if any(k < 0 or k >= scale for k in orders):
        fail("ORDERS", f"{orders!r}: every order must be in 0..IMG_SCALE-1 (IMG_SCALE={scale})")
    grid_rows(v, fail, "TRAR", "its span masks live on the image grid")
