"""Hashes of what a checkpoint's rows mean: the vocabulary (token_to_ix in order) and the answer list (in index order).

A checkpoint's embedding rows and classifier rows are positions in these two lists. Data regenerated or edited with
another order gives a model of the same shapes that answers wrongly without a word, so training stores both hashes
in the checkpoint (torch: top-level keys of the container; paddle: the .pdopt) and loading for val, test, resume and
export compares them with the data's. Checkpoints without them (the released originals, files from before) load
unchecked.
"""
import hashlib
import json

VOCAB_KEY = "vocab_sha256"
ANSWERS_KEY = "answers_sha256"


def _sha256(items):
    return hashlib.sha256(json.dumps(items, ensure_ascii=False, separators=(",", ":")).encode("utf-8")).hexdigest()


def answer_list(dataset):
    """The dataset's answers (VQA, CLEVR) or class names (classification), in index order."""
    ix_to_ans = getattr(dataset, "ix_to_ans", None)
    if ix_to_ans is not None:
        return [ix_to_ans[i] for i in range(len(ix_to_ans))]
    return list(getattr(dataset, "class_names", None) or [])


def hashes(token_to_ix, answers):
    """{vocab_sha256, answers_sha256} of a vocabulary (token -> index, or None for a task without one) and an
    answer list in index order."""
    out = {ANSWERS_KEY: _sha256(list(answers))}
    if token_to_ix is not None:
        out[VOCAB_KEY] = _sha256([[token, int(ix)] for token, ix in token_to_ix.items()])
    return out


def of_dataset(dataset):
    return hashes(getattr(dataset, "token_to_ix", None), answer_list(dataset))


class DataMismatch(ValueError):
    """A checkpoint trained with another vocabulary or answer list than the data it is loaded for."""


_WHAT = {VOCAB_KEY: "vocabulary (the order of the question words)", ANSWERS_KEY: "answer list"}


def check(meta, current, path):
    """Refuse a checkpoint whose stored hashes (``meta``, from be.load_checkpoint) differ from ``current``
    (hashes() of the data it is used with); hashes the checkpoint lacks are not checked."""
    for key in (VOCAB_KEY, ANSWERS_KEY):
        saved, found = (meta or {}).get(key), current.get(key)
        if saved is not None and found is not None and saved != found:
            raise DataMismatch(f"{path} was trained with another {_WHAT[key]} than this data's ({key} "
                               f"{saved[:16]}... in the checkpoint, {found[:16]}... here): its rows would mean "
                               "other words and answers; use the data it was trained on (DATA_ROOT, the same "
                               "question and answer files) or train again on this data")
