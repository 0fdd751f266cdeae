"""PyTorch backend. glibc malloc is tuned as core/malloc_tuning.py says."""
from core.malloc_tuning import tune_malloc

tune_malloc()
