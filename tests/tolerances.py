"""Every cross-framework tolerance in one place. Raising one needs a comment with the measured maximum difference."""

# fp32 CPU, eval mode, same weights and inputs: max abs difference of logits / intermediates.
FORWARD_ATOL = 1e-5
# gradient of every parameter after one backward, dropout off: max abs diff / (max abs of the reference + tiny).
GRAD_RTOL = 1e-5
# loss over a few optimizer steps (Adam places eps differently in each framework: ulp-level drift).
TRAIN_RTOL = 1e-4
