"""Sample subsets: image-id lists, answer types, questions whose features are missing, first N."""
import json
import logging
import os

from core.text import NotUtf8, read_utf8

log = logging.getLogger(__name__)

ANSWER_TYPES = ("yes/no", "number", "other")


def read_iid_list(spec):
    """SUBSET_IIDS -> set of int image ids, or None when unset.

    ``spec`` is a list of ids, or the path of a json list or of a text file with one id per line ('#' comments allowed).
    """
    if spec is None or spec == "" or spec == []:
        return None
    if isinstance(spec, (list, tuple, set)):
        return {_as_iid(v, "SUBSET_IIDS") for v in spec}
    path = str(spec)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SUBSET_IIDS: file not found: {path} (expected a json list of image ids or a "
                                "text file with one id per line)")
    try:
        text = read_utf8(path)
    except NotUtf8 as exc:
        raise ValueError(f"SUBSET_IIDS {exc}") from None
    if text.lstrip().startswith("{"):
        raise ValueError(f"SUBSET_IIDS {path}: a json object; expected a json list of image ids ([185, 1681]) or "
                         "one id per line")
    if text.lstrip().startswith("["):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"SUBSET_IIDS {path}: not a valid json list ({exc})") from None
    else:
        values = [line.split("#")[0].strip() for line in text.splitlines()]
        values = [v for v in values if v]
    return {_as_iid(v, f"SUBSET_IIDS {path}") for v in values}


def _as_iid(value, where):
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: '{value}' is not an integer image id") from None


def read_ans_types(spec):
    """SUBSET_ANS_TYPES -> set of VQA answer types, or None. A list, or one string (comma-separated allowed)."""
    if not spec:
        return None
    values = [v.strip() for v in spec.split(",")] if isinstance(spec, str) else [str(v).strip() for v in spec]
    bad = [v for v in values if v not in ANSWER_TYPES]
    if bad:
        raise ValueError(f"SUBSET_ANS_TYPES: unknown answer type(s) {bad}; expected some of {list(ANSWER_TYPES)}")
    return set(values)


def read_limit(spec):
    """SUBSET -> int N > 0, or None for all samples."""
    if spec is None or spec is False or spec == 0:
        return None
    if isinstance(spec, bool) or not isinstance(spec, int) or spec < 0:
        raise ValueError(f"SUBSET: expected a positive integer (number of samples) or 0/None for all, got {spec!r}")
    return spec


def select(samples, feature_index, feat_folders, iids=None, ans_types=None, limit=None, skip_missing=False,
           label="", source=None):
    """Filter ``samples`` (dicts with 'qid', 'iid' and, for answer-type filtering, 'ans_type') in order.

    Order: image ids, answer types, missing features (dropped with one log line when ``skip_missing``), then the first
    ``limit``. Without ``skip_missing`` a kept sample whose image has no features is an error.
    ``feature_index`` is either a dict iid -> path or a callable sample -> bool (has a feature); ``feat_folders``
    names where the features are looked for, in messages (the folders, or a feature store); ``source``, the
    question files the samples come from.
    """
    has_feature = feature_index if callable(feature_index) else (lambda s: s["iid"] in feature_index)
    if not samples:
        raise ValueError(f"{label}no questions in {source or 'the split'}: the split itself is empty")
    kept = samples
    if iids is not None:
        kept = [s for s in kept if s["iid"] in iids]
        if samples and not kept:
            raise ValueError(f"{label}none of its {len(samples)} questions is about an image in SUBSET_IIDS (VQA's "
                             "train and val images are disjoint): add this split's image ids to the list, or, for "
                             "training, skip the validation with --EVAL_EE=False")
    if ans_types is not None:
        before = len(kept)
        kept = [s for s in kept if s.get("ans_type") in ans_types]
        if not kept:
            about = " about the SUBSET_IIDS images" if iids is not None else ""
            raise ValueError(f"{label}no samples left after SUBSET_ANS_TYPES: none of its {before} questions{about} "
                             f"has an answer type in {sorted(ans_types)}")
    if skip_missing:
        before = len(kept)
        kept = [s for s in kept if has_feature(s)]
        dropped = before - len(kept)
        if before and not kept:
            raise ValueError(f"{label}no samples left after SKIP_MISSING_FEATS: none of its {before} questions "
                             f"has image features in {', '.join(feat_folders)}")
        if dropped:
            log.warning("%sSKIP_MISSING_FEATS: dropped %d of %d questions whose image has no features in %s",
                        label, dropped, before, ", ".join(feat_folders))
    if limit is not None:
        kept = kept[:limit]
    if not skip_missing:
        for s in kept:
            if not has_feature(s):
                raise FileNotFoundError(
                    f"{label}image {s['iid']} (question {s['qid']}) has no features in {', '.join(feat_folders)}; "
                    "add the features, or drop such questions with --SKIP_MISSING=True (SKIP_MISSING_FEATS)")
    if not kept:
        raise ValueError(f"{label}no samples left after the subset filters (SUBSET_IIDS / SUBSET_ANS_TYPES / "
                         "SKIP_MISSING_FEATS)")
    return kept
