"""Checkpoint file formats, pure numpy (no torch, no paddle; nothing of backends/, convert/ or deploy/):

restricted_pickle.py  restricted readers of torch pickles (zip, legacy) and Paddle .pdparams / .pdopt, into numpy
torch_zip.py          a writer of torch.save's zip format from numpy (paddle2torch on a machine without torch)
integrity.py          checksums: a torch zip's CRC-32, the .pdopt's sha256 of its .pdparams and of itself
layout.py             state-dict layout rules: Linear transposes, LSTM names, the openvqa container, CheckpointMismatch
adam_state.py         Adam optimizer state, torch state_dict <-> Paddle moments
mmnas_keys.py         the official mmnas code's key names and answer order
vit_npz.py            Google's official ViT .npz checkpoints -> the ViT nets' state dict (the original load_from)

The backends read and write checkpoints with these, and convert/ builds on them; tests/test_import_graph.py holds
the package to its imports.
"""
