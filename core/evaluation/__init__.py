"""Evaluation: official VQA accuracy, CLEVR family accuracy, classification top-1/top-5 and result-file writers
(numpy only)."""
from core.evaluation.classification import classification_accuracy
from core.evaluation.clevr import clevr_accuracy
from core.evaluation.results import (
                                    write_classification_results,
                                    write_clevr_results,
                                    write_predictions,
                                    write_vqa_results,
)
from core.evaluation.vqa import vqa_accuracy

__all__ = ["vqa_accuracy", "clevr_accuracy", "classification_accuracy", "write_vqa_results", "write_clevr_results",
           "write_predictions", "write_classification_results"]
