"""LSAT (Shen et al., Applied Intelligence 2023), as reference lsat.md section 3 specifies it: MCAN on the image grid
whose decoder image self-attention is local (blocks of LSAT_WINDOW row-major tokens, each query seeing its own block
and LSAT_LOOK_BACKWARD / LSAT_LOOK_FORWARD blocks around it), with optional rotary positions (LSAT_ROTARY).

IMG_SCALE (the grid side, N = IMG_SCALE ** 2 tokens) is the key TRAR defines, with the same default.
"""
from core.specs import grid_rows

DEFAULTS = {
    "IMG_SCALE": 8, "LSAT_WINDOW": 8, "LSAT_LOOK_BACKWARD": 1, "LSAT_LOOK_FORWARD": 1, "LSAT_ROTARY": False,
}
AT_LEAST = {"LSAT_WINDOW": 1, "LSAT_LOOK_BACKWARD": 0, "LSAT_LOOK_FORWARD": 0}


def validate(v, fail):
    scale = v["IMG_SCALE"]
    rows = grid_rows(v, fail, "LSAT", "its windows are rows of the image grid")
    if rows % v["LSAT_WINDOW"]:
        fail("LSAT_WINDOW", f"{v['LSAT_WINDOW']} must divide the {rows} image tokens ({scale}x{scale} grid), e.g. "
                            f"{scale} for one grid row")
    head = v["HIDDEN_SIZE"] // v["MULTI_HEAD"]
    if v["LSAT_ROTARY"] and head % 2:
        fail("LSAT_ROTARY", f"rotary positions need an even head size, got HIDDEN_SIZE / MULTI_HEAD = {head}")
