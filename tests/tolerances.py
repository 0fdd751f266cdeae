"""The suite's tolerances are the parity tool's: one definition, in convert/tolerances.py."""
from convert.tolerances import CANCELLING_GRAD_RTOL, FORWARD_ATOL, GRAD_RTOL, TRAIN_RTOL  # noqa: F401
