"""ViT+TRAR (hsb1357173526/ViT-TRAR): ViT's keys (core/specs/vit.py) plus the routing keys it shares with TRAR
(core/specs/trar.py: ORDERS, POOLING, ROUTING, ...). The original has only soft routing with average pooling;
its config's orders and img_scale are ORDERS and the derived IMG_SCALE."""
from core.specs import vit

DEFAULTS = {}
derive = vit.derive


def validate(v, fail):
    vit.validate(v, fail)
    orders, scale = v["ORDERS"], v["IMG_SCALE"]
    if not orders or len(set(orders)) != len(orders):
        fail("ORDERS", f"expected a non-empty list of distinct integers, got {orders!r}")
    if any(k < 0 or k >= scale for k in orders):
        fail("ORDERS", f"{orders!r}: every order must be in 0..IMG_SCALE-1 (IMG_SCALE={scale}, the patches per side)")
    if v["POOLING"] != "avg":
        fail("POOLING", f"{v['POOLING']!r}: ViT+TRAR routes from the average of the tokens only ('avg')")
    if v["ROUTING"] != "soft":
        fail("ROUTING", f"{v['ROUTING']!r}: ViT+TRAR has soft routing only")
