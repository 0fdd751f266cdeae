"""The tasks' run-level evaluation, one module per task of core/registry.py (TaskSpec.module):

    batch_outputs(cfg, logits) -> {name: array}     what evaluation keeps of one batch's logits (B, classes)
    evaluate(cfg, dataset, mode, version, outputs, say) -> {'overall', 'per_type', 'result_file', ...}
                                                    the outputs of every batch concatenated; writes the result file
                                                    of ``mode`` ('val' | 'test') and scores it when the answers are
                                                    known; ``say(text)`` reports a line (the engine passes its
                                                    logger's info: core/logs.py)
"""
import importlib

from core import registry


def module_of(cfg):
    """The task module of a config (its data format's task)."""
    return importlib.import_module(registry.task_of(cfg).module)
