"""CLEVR dataset (openvqa clevr_loader semantics): CLEVR_<split>_questions.json and feats/<split>/<image_index>.npz."""
import os

import numpy as np

from core.data import features, is_generated, subsets
from core.data.answers import answers_in_order
from core.data.glove import cached_vocabulary, pretrained_embedding
from core.data.paths import (CLEVR_ANSWER_SPLITS, CLEVR_VOCAB_SPLITS, cfg_get, feat_dirs, format_root, load_json,
                             question_path, require_dir, require_file, split_names, warn_once)
from core.data.records import CLEVR_QUESTION, check_records
from core.data.tokenizer import build_vocab, encode, max_question_length

FMT = "clevr"
_ZEROS = np.zeros(1, np.float32)


class CLEVRDataset:
    """``ds[i]`` -> dict of numpy arrays; qids are positions in the loaded question list (= question_index for one
    split). Image ids are looked up per split, so train+val does not mix up images sharing an image_index."""

    def __init__(self, cfg, mode):
        self.mode = mode
        self.root = root = format_root(cfg.DATA_ROOT, FMT)
        self.grid_size = tuple(cfg.FEAT_SIZE[FMT]["GRID_FEAT_SIZE"])
        if mode == "train" and cfg_get(cfg, "LOSS_FUNC", "ce") != "ce":
            raise ValueError(f"LOSS_FUNC: CLEVR trains with 'ce', got {cfg.LOSS_FUNC!r}")
        if cfg_get(cfg, "SUBSET_ANS_TYPES"):
            raise ValueError("SUBSET_ANS_TYPES: answer types exist for VQA only; unset it for CLEVR")
        if cfg_get(cfg, "FEAT_STORE"):
            raise ValueError("FEAT_STORE: feature stores hold VQA grid or region features; unset it for CLEVR")

        splits = split_names(cfg.SPLIT[mode], FMT)
        if mode == "train" and "test" in splits:
            raise ValueError(f"SPLIT: the training split '{cfg.SPLIT[mode]}' includes 'test', which has no answers")
        q_paths = [require_file(question_path(root, FMT, s), root, FMT, f"{s} questions") for s in splits]
        folders = {s: feat_dirs(root, FMT, s)[0] for s in splits}
        for folder in folders.values():
            require_dir(folder, root, FMT, "feature")

        loaded = {}
        record, vocab_key = self._vocabulary(cfg, loaded)
        self.token_to_ix = record["token_to_ix"]
        self.max_token = int(record["max_token"])
        self.ans_to_ix, self.ix_to_ans = answers_in_order(record["answers"])

        ques_list, samples = [], []
        for split, path in zip(splits, q_paths):
            questions = _questions(path, loaded)
            if mode == "train":
                for index, q in enumerate(questions):
                    if q.get("answer") not in self.ans_to_ix:
                        raise ValueError(f"{path}: question {index} has no known 'answer' ({q.get('answer')!r}); "
                                         "training needs answered questions")
            for q in questions:
                samples.append({"qid": len(ques_list), "iid": int(q["image_index"]), "split": split})
                ques_list.append(q)
        loaded.clear()

        self.feat_index = {s: features.index_features([folders[s]], features.REGION_EXT) for s in splits}
        samples = subsets.select(
            samples, lambda s: s["iid"] in self.feat_index[s["split"]], list(folders.values()),
            iids=subsets.read_iid_list(cfg_get(cfg, "SUBSET_IIDS")), limit=subsets.read_limit(cfg_get(cfg, "SUBSET")),
            skip_missing=bool(cfg_get(cfg, "SKIP_MISSING_FEATS", False)), label=f"{mode} ({'+'.join(splits)}): ",
            source=" + ".join(q_paths))

        self._feat_paths = [self.feat_index[s["split"]][s["iid"]] for s in samples]
        features.load_clevr_grid(self._feat_paths[0], self.grid_size)  # a malformed feature file fails now
        self.pretrained_emb = pretrained_embedding(cfg, self.token_to_ix, vocab_key)
        self.qids = [s["qid"] for s in samples]
        self.questions = {qid: ques_list[qid] for qid in self.qids}
        self.data_size = len(self.qids)
        self.token_size = len(self.token_to_ix)
        self.ans_size = len(self.ans_to_ix)
        self.questions_path = q_paths[0] if len(q_paths) == 1 else q_paths
        # CLEVR answers live in the question files
        self.annotations_path = None if mode == "test" else self.questions_path

    def _vocabulary(self, cfg, loaded):
        paths = {s: question_path(self.root, FMT, s) for s in CLEVR_VOCAB_SPLITS}
        present = [s for s in CLEVR_VOCAB_SPLITS if os.path.isfile(paths[s])]
        missing = [paths[s] for s in CLEVR_VOCAB_SPLITS if s not in present]
        answer_splits = [s for s in CLEVR_ANSWER_SPLITS if s in present]
        if not answer_splits:
            raise FileNotFoundError(f"CLEVR answers are listed from the train and val question files; neither "
                                    f"{paths['train']} nor {paths['val']} exists")
        if missing and not is_generated(cfg):
            warn_once(f"CLEVR vocabulary built without {', '.join(missing)}: the original scans train, val and test "
                      "questions (answers: train and val), so the vocabulary, question length or answer list may "
                      "differ from the released checkpoints'")

        def build():
            lists = [_questions(paths[s], loaded) for s in present]
            answers = [q["answer"] for s in answer_splits for q in _questions(paths[s], loaded) if "answer" in q]
            ans_to_ix, _ = answers_in_order(answers)
            return {"token_to_ix": build_vocab(lists), "max_token": max_question_length(lists),
                    "answers": list(ans_to_ix)}

        return cached_vocabulary(cfg.RESULTS_ROOT, FMT, [paths[s] for s in present], build)

    def facts(self):
        """What build_model needs of this data (the vqa task's facts)."""
        return {"token_size": self.token_size, "answer_size": self.ans_size, "pretrained_emb": self.pretrained_emb}

    def __len__(self):
        return self.data_size

    def __getitem__(self, index):
        qid = self.qids[index]
        question = self.questions[qid]
        grid = features.load_clevr_grid(self._feat_paths[index], self.grid_size)
        if self.mode == "train":
            ans = np.array([self.ans_to_ix[question["answer"]]], np.int64)
        else:
            ans = _ZEROS.copy()
        return {"frcn_feat": _ZEROS.copy(), "grid_feat": grid, "bbox_feat": _ZEROS.copy(),
                "ques_ix": encode(question["question"], self.token_to_ix, self.max_token), "ans": ans}


def _questions(path, loaded):
    if path not in loaded:
        loaded[path] = check_records(path, load_json(path, "questions")["questions"], CLEVR_QUESTION, "question")
    return loaded[path]
