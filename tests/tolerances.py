"""The suite's tolerances are the parity tool's: one definition, in convert/tolerances.py."""
from convert.tolerances import FORWARD_ATOL, GRAD_RTOL, TRAIN_RTOL, gradient_error  # noqa: F401
