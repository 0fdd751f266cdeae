"""VQA-v2 dataset (openvqa vqa_loader semantics): questions + annotations json, grid .npy or region .npz features."""
import os

import numpy as np

from core import registry
from core.data import features, is_generated, subsets
from core.data.feature_store import FeatureStore
from core.data.answers import check_targets, load_answer_dict, soft_scores
from core.data.glove import cached_vocabulary, pretrained_embedding
from core.data.paths import (VQA_VOCAB_SPLITS, annotation_path, cfg_get, feat_dirs, format_root, load_json,
                             question_path, require_dir, require_file, split_names, warn_once)
from core.data.records import VQA_ANNOTATION, VQA_QUESTION, VQA_SCORED_ANNOTATION, check_records
from core.data.tokenizer import VQA_MAX_TOKEN, build_vocab, encode
from core.geometry import relation_geometry

FMT = "vqa"
_ZEROS = np.zeros(1, np.float32)


class VQADataset:
    """``ds[i]`` -> dict of numpy arrays (frcn_feat, grid_feat, bbox_feat, ques_ix, ans); see docs/architecture.md."""

    def __init__(self, cfg, mode):
        self.mode = mode
        self.root = root = format_root(cfg.DATA_ROOT, FMT)
        self.feat_type = cfg_get(cfg, "FEAT_TYPE", "grid")
        if self.feat_type not in ("grid", "region"):
            raise ValueError(f"FEAT_TYPE: expected 'grid' (.npy) or 'region' (.npz), got {self.feat_type!r}")
        self.loss_func = cfg_get(cfg, "LOSS_FUNC", "bce")
        if mode == "train" and self.loss_func not in ("bce", "kld"):
            raise ValueError(f"LOSS_FUNC: VQA trains with 'bce' or 'kld', got {self.loss_func!r}")
        sizes = cfg.FEAT_SIZE[FMT]
        self.frcn_size = tuple(sizes["FRCN_FEAT_SIZE"])
        self.bbox_rows = int(sizes.get("BBOX_FEAT_SIZE", (self.frcn_size[0], 5))[0])
        self.use_bbox_feat = bool(cfg_get(cfg, "USE_BBOX_FEAT", False))
        self.bbox_normalize = bool(cfg_get(cfg, "BBOX_NORMALIZE", False))
        # a relation attention (MMNasNet's) takes the pairwise box geometry, computed here once per sample
        self.rel_geom = (str(cfg_get(cfg, "MODEL_USE", None)).lower() in registry.model_uses()
                         and registry.model_of(cfg).needs_box_geometry)
        self.max_token = int(cfg_get(cfg, "MAX_TOKEN", VQA_MAX_TOKEN))

        splits = split_names(cfg.SPLIT[mode], FMT)
        if mode == "train" and "test" in splits:
            raise ValueError(f"SPLIT: the training split '{cfg.SPLIT[mode]}' includes 'test', which has no answers")
        q_paths = [require_file(question_path(root, FMT, s), root, FMT, f"{s} questions") for s in splits]
        a_paths = [require_file(annotation_path(root, s), root, FMT, f"{s} annotations")
                   for s in splits] if mode in ("train", "val") else []
        store_path = cfg_get(cfg, "FEAT_STORE")
        folders = list(dict.fromkeys(d for s in splits for d in feat_dirs(root, FMT, s)))
        if not store_path:   # with a feature store the per-image files are not needed
            for folder in folders:
                require_dir(folder, root, FMT, "feature")

        self.ans_to_ix, self.ix_to_ans = load_answer_dict()
        loaded = {}
        ann_fields = VQA_ANNOTATION if mode == "train" else VQA_SCORED_ANNOTATION
        anns = [check_records(p, load_json(p, "annotations")["annotations"], ann_fields, "annotation")
                for p in a_paths]
        if mode == "train":
            # Each annotation goes with the question of its own split's file: ids are unique within a file, not
            # necessarily across the files read together (VG's ids and VQA-v2's come from different numberings).
            samples = []
            for q_path, a_path, split_anns in zip(q_paths, a_paths, anns):
                questions = _by_question_id(q_path, _questions(q_path, loaded), "question", strict=False)
                orphans = [a["question_id"] for a in split_anns if a["question_id"] not in questions]
                if orphans:
                    raise ValueError(f"{a_path}: the annotation of question {orphans[0]} has no question in {q_path} "
                                     f"({len(orphans)} such annotations)")
                samples += [{"qid": a["question_id"], "iid": int(a["image_id"]), "ans_type": a.get("answer_type"),
                             "question": questions[a["question_id"]], "annotation": a} for a in split_anns]
        else:
            # answers are written and scored by question id: one id, one question
            questions = _by_question_id(" + ".join(q_paths), [q for p in q_paths for q in _questions(p, loaded)],
                                        "question")
            qid_to_ann = {a["question_id"]: a for split_anns in anns for a in split_anns}
            if anns:   # val: every question is scored against its annotation
                _require_annotations(questions, qid_to_ann, a_paths, q_paths)
            samples = [{"qid": qid, "iid": int(q["image_id"]), "question": q, "annotation": qid_to_ann.get(qid),
                        "ans_type": qid_to_ann.get(qid, {}).get("answer_type")} for qid, q in questions.items()]

        self.feat_store = None
        if store_path:
            self.feat_index = {}
            feature_source = [f"the feature store {store_path} (built from other folders than {', '.join(folders)}?)"]
            try:
                self.use_feature_store(store_path, iids=())
            except ValueError as exc:
                raise ValueError(f"FEAT_STORE: {exc}") from None
            has_feature = lambda sample: sample["iid"] in self.feat_store  # noqa: E731
        else:
            ext = features.GRID_EXT if self.feat_type == "grid" else features.REGION_EXT
            self.feat_index, feature_source = features.index_features(folders, ext), folders
            has_feature = self.feat_index
        ans_types = subsets.read_ans_types(cfg_get(cfg, "SUBSET_ANS_TYPES"))
        if ans_types is not None and mode == "test":
            warn_once("SUBSET_ANS_TYPES is ignored for test questions (they have no annotations)")
            ans_types = None
        samples = subsets.select(
            samples, has_feature, feature_source, iids=subsets.read_iid_list(cfg_get(cfg, "SUBSET_IIDS")),
            ans_types=ans_types, limit=subsets.read_limit(cfg_get(cfg, "SUBSET")),
            skip_missing=bool(cfg_get(cfg, "SKIP_MISSING_FEATS", False)), label=f"{mode} ({'+'.join(splits)}): ",
            source=" + ".join(a_paths if mode == "train" else q_paths))

        self._features(samples[0]["iid"])  # a malformed feature file fails now, not mid-epoch
        # after the file and feature checks, so a bad layout fails before a long GloVe scan
        self.token_to_ix, vocab_key = question_vocabulary(cfg, loaded)
        loaded.clear()
        self.pretrained_emb = pretrained_embedding(cfg, self.token_to_ix, vocab_key)

        self.qids = [s["qid"] for s in samples]
        self.iids = [s["iid"] for s in samples]
        self.questions = {s["qid"]: s["question"] for s in samples}    # by id, for evaluation (unique there)
        self.annotations = {s["qid"]: s["annotation"] for s in samples if s["annotation"]} if a_paths else None
        self._sample_questions = [s["question"]["question"] for s in samples]
        self._sample_answers = [s["annotation"]["answers"] for s in samples] if mode == "train" else None
        if mode == "train":
            check_targets(self._sample_answers, self.ans_to_ix, " + ".join(a_paths), warn_once)
        self.data_size = len(self.qids)
        self.token_size = len(self.token_to_ix)
        self.ans_size = len(self.ans_to_ix)
        self.questions_path = q_paths[0] if len(q_paths) == 1 else q_paths
        self.annotations_path = None if not a_paths else (a_paths[0] if len(a_paths) == 1 else a_paths)

    def facts(self):
        """What build_model needs of this data (the vqa task's facts)."""
        return {"token_size": self.token_size, "answer_size": self.ans_size, "pretrained_emb": self.pretrained_emb}

    def __len__(self):
        return self.data_size

    def __getitem__(self, index):
        frcn, bbox = self._features(self.iids[index])
        if self.mode == "train":
            ans = soft_scores(self._sample_answers[index], self.ans_to_ix, self.loss_func)
        else:
            ans = _ZEROS.copy()
        sample = {"frcn_feat": frcn, "grid_feat": _ZEROS.copy(), "bbox_feat": bbox,
                  "ques_ix": encode(self._sample_questions[index], self.token_to_ix, self.max_token), "ans": ans}
        if self.rel_geom:
            sample["rel_geom"] = relation_geometry(bbox[:, :4])
        return sample

    def use_feature_store(self, path, iids=None):
        """Read features from a memory-mapped store (``python -m core.data.feature_store``) instead of one file per
        sample; the arrays are identical. Every image of this dataset must be in the store."""
        store = FeatureStore(path)
        if store.kind != self.feat_type or store.dim != self.frcn_size[1]:
            raise ValueError(f"{path}: the feature store holds {store.kind} features of width {store.dim}, this "
                             f"model reads FEAT_TYPE {self.feat_type!r} of width {self.frcn_size[1]} (grid: TRAR, "
                             f"region: MCAN / MMNasNet); build one with `python -m core.data.feature_store --kind "
                             f"{self.feat_type} ...`")
        missing = sorted({iid for iid in (self.iids if iids is None else iids) if iid not in store})
        if missing:
            raise ValueError(f"{path}: the feature store lacks {len(missing)} images of this dataset (first: "
                             f"{missing[0]}); rebuild it from the feature folders")
        self.feat_store = store

    def _features(self, iid):
        """(frcn_feat, bbox_feat) of an image; bbox_feat is the (1,) dummy for grid features."""
        store = self.feat_store
        if store is not None:
            if self.feat_type == "grid":
                return store.grid(iid, self.frcn_size[0]), _ZEROS.copy()
            return store.region(iid, self.frcn_size, self.bbox_rows, self.use_bbox_feat, self.bbox_normalize)
        path = self.feat_index[iid]
        if self.feat_type == "grid":
            return features.load_grid(path, *self.frcn_size), _ZEROS.copy()
        return features.load_region(path, self.frcn_size, self.bbox_rows, self.use_bbox_feat, self.bbox_normalize)


def question_vocabulary(cfg, loaded=None):
    """(token_to_ix, cache key) as the original builds it: the train, val, test2015 and VG question files, in that
    order, those that exist; cached under RESULTS_ROOT so every run and both backends share it."""
    loaded = {} if loaded is None else loaded
    root = format_root(cfg.DATA_ROOT, FMT)
    paths = [question_path(root, FMT, s) for s in VQA_VOCAB_SPLITS]
    present = [p for p in paths if os.path.isfile(p)]
    missing = [p for p in paths if p not in present]
    if not present:
        raise FileNotFoundError(f"DATA_ROOT: no VQA question file under {root} to build the vocabulary from; "
                                f"expected some of {', '.join(paths)}")
    if missing and not is_generated(cfg):  # generated data has no VG file by design
        warn_once(f"vocabulary built without {', '.join(missing)}: the original scans the train, val, test2015 "
                  "and VG question files, so this vocabulary (and the word embedding size) differs from the "
                  "released checkpoints'")
    record, key = cached_vocabulary(
        cfg.RESULTS_ROOT, FMT, present,
        lambda: {"token_to_ix": build_vocab(_questions(p, loaded) for p in present)})
    return record["token_to_ix"], key


def _by_question_id(source, records, what, strict=True):
    """{question_id: record}. An id that repeats in ``source``: ValueError naming it, or with ``strict`` False a
    warning, the last record kept (as openvqa's lookup by id does: training still reads every annotation)."""
    by_id, repeated = {}, []
    for record in records:
        qid = record["question_id"]
        if qid in by_id:
            if strict:   # answers are written and scored by question id
                raise ValueError(f"{source}: two {what}s have question_id {qid}; each needs its own id")
            repeated.append(qid)
        by_id[qid] = record
    if repeated:
        warn_once(f"{source}: {len(repeated)} {what}s repeat an earlier question_id (e.g. {repeated[0]}); the last "
                  "one of each id is used, as in openvqa")
    return by_id


def _require_annotations(questions, qid_to_ann, a_paths, q_paths):
    lacking = [qid for qid in questions if qid not in qid_to_ann]
    if lacking:
        raise ValueError(f"{' + '.join(a_paths)}: no annotation for question_id {lacking[0]} of "
                         f"{' + '.join(q_paths)} ({len(lacking)} questions without one); a val split scores every "
                         "question against its annotation")


def _questions(path, loaded):
    """The 'questions' list of a question file (its records checked), read once per dataset construction."""
    if path not in loaded:
        loaded[path] = check_records(path, load_json(path, "questions")["questions"], VQA_QUESTION, "question")
    return loaded[path]
