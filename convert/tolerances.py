"""Every cross-framework tolerance in one place (the parity tool and the test suite both read these).
Raising one needs a comment with the measured maximum difference."""

# fp32 CPU, eval mode, same weights and inputs: max abs difference of logits / intermediates
# (measured: 3.6e-7 tiny MMNasNet, 1.5e-6 full-size TRAR logits).
FORWARD_ATOL = 1e-5
# Gradient of every parameter after one backward: max abs diff / max abs of the torch gradient.
GRAD_RTOL = 1e-5
# ... except the TRAR routing logits layer (routing_block.mlp.2, see convert.parity.cancelling_gradient): its
# gradient's components over the orders sum to zero (softmax shift), so each is a difference of near-equal terms and
# carries their rounding. Measured: 1.46e-5 at full size (torch fp32 itself is 7e-6 off fp64 there), 2.4e-5 on the
# tiny attention-pooling test net with dropout 0.3. ViT+TRAR's routing head (tests/test_vit.py): 2.4e-5 on mlp.0, fed
# by the same logits' gradient alone, on a tiny 5x5-patch net.
CANCELLING_GRAD_RTOL = 5e-5
# Loss over a few optimizer steps (Adam places eps differently in each framework: ulp-level drift).
TRAIN_RTOL = 1e-4
