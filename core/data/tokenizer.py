"""Question tokenisation and vocabulary, as the openvqa loaders (VQA and CLEVR share it)."""
import re

import numpy as np

VQA_MAX_TOKEN = 14
SPECIAL_TOKENS = ("PAD", "UNK", "CLS")
PAD, UNK, CLS = 0, 1, 2

# Characters deleted outright (so "what's" -> "whats"); '-' and '/' become spaces afterwards.
_DELETE = re.compile(r"[.,'!?\"()*#:;]")


def tokenize(question):
    """Lower-case, delete . , ' ! ? \" ( ) * # : ;, turn '-' and '/' into spaces, split on whitespace."""
    text = _DELETE.sub("", question.lower())
    return text.replace("-", " ").replace("/", " ").split()


def build_vocab(question_lists):
    """token -> index: PAD 0, UNK 1, CLS 2, then words in first-occurrence order over the lists, in order."""
    token_to_ix = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for questions in question_lists:
        for q in questions:
            for word in tokenize(q["question"]):
                if word not in token_to_ix:
                    token_to_ix[word] = len(token_to_ix)
    return token_to_ix


def max_question_length(question_lists):
    """Longest tokenised question (CLEVR's max_token)."""
    return max((len(tokenize(q["question"])) for questions in question_lists for q in questions), default=1)


def encode(question, token_to_ix, max_token):
    """int64 array (max_token,): word ids (UNK for unknown words), PAD after the end, the first max_token words kept."""
    ids = np.zeros(max_token, np.int64)
    for i, word in enumerate(tokenize(question)[:max_token]):
        ids[i] = token_to_ix.get(word, UNK)
    return ids
