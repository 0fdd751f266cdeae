"""Vocabulary cache and the pre-trained word embedding (GloVe .txt, aligned .npy, spaCy model, or random).

Both are cached under <RESULTS_ROOT>/cache/, keyed by a hash of the question files (paths, sizes, modification times)
and of the vector source, so the torch and paddle backends start from identical inputs and later runs do not rebuild
them.
"""
import gzip
import hashlib
import importlib.util
import io
import json
import logging
import os

import numpy as np

from core.data.paths import atomic_write_bytes, atomic_write_json, load_json, warn_once

log = logging.getLogger(__name__)

CACHE_VERSION = 1
RANDOM_SEED = 0


def cache_dir(results_root):
    return os.path.join(results_root, "cache")


def _file_id(path):
    """[absolute path, size, modification time in ns]: a file edited in place (same size) gets another id."""
    st = os.stat(path)
    return [os.path.abspath(path), st.st_size, st.st_mtime_ns]


def files_key(fmt, paths):
    """Hash of the format name and each file's _file_id."""
    return _hash([CACHE_VERSION, fmt, [_file_id(p) for p in paths]])


def _hash(obj):
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def cached_vocabulary(results_root, fmt, question_paths, build):
    """The vocabulary record (a json-able dict with 'token_to_ix') for these question files; ``build()`` makes it once."""
    key = files_key(fmt, question_paths)
    path = os.path.join(cache_dir(results_root), f"vocab_{fmt}_{key}.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        log.debug("vocabulary read from cache %s", path)
    else:
        record = build()
        record["question_files"] = [os.path.abspath(p) for p in question_paths]
        atomic_write_json(path, record)
        log.debug("vocabulary written to cache %s", path)
    return record, key


def pretrained_embedding(cfg, token_to_ix, vocab_key):
    """np.float32 (len(token_to_ix), WORD_EMBED_SIZE), or None when USE_GLOVE is off."""
    if not cfg.USE_GLOVE:
        for key in ("GLOVE_PATH", "GLOVE_SPACY_MODEL"):
            if getattr(cfg, key, None):
                warn_once(f"{key} is set but USE_GLOVE is False: the word embedding starts from random values "
                          "(set USE_GLOVE True to use the vectors)", log)
        return None
    dim = int(cfg.WORD_EMBED_SIZE)
    kind, where, desc = _vector_source(cfg)
    key = _hash([CACHE_VERSION, vocab_key, desc, dim])
    path = os.path.join(cache_dir(cfg.RESULTS_ROOT), f"emb_{key}.npy")
    if os.path.isfile(path):
        emb = _read_npy(path, "the word embedding cache")
        if emb.shape == (len(token_to_ix), dim):
            log.debug("word embedding read from cache %s", path)
            return emb.astype(np.float32, copy=False)
    words = sorted(token_to_ix, key=token_to_ix.get)
    if kind == "txt":
        emb = _from_txt(where, words, dim)
    elif kind == "npy":
        emb = _from_aligned_npy(where, words, dim)
    elif kind == "spacy":
        emb = _from_spacy(where, words, dim)
    else:
        emb = random_embedding(len(words), dim)
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    # The vocabulary beside the matrix makes the cached file usable as GLOVE_PATH itself.
    atomic_write_json(path[:-4] + ".json", token_to_ix)
    _save_npy(path, emb)
    log.debug("word embedding (%s) written to cache %s", desc, path)
    return emb


def _vector_source(cfg):
    """(kind, location, description for the cache key); warns once when falling back to random vectors."""
    glove_path = getattr(cfg, "GLOVE_PATH", None)
    if glove_path:
        if not os.path.isfile(glove_path):
            raise FileNotFoundError(f"GLOVE_PATH: file not found: {glove_path} (expected a GloVe .txt/.txt.gz "
                                    f"'word v1 ... vD' file, or an aligned .npy matrix with its vocabulary .json beside it)")
        kind = "npy" if glove_path.endswith(".npy") else "txt"
        ids = [_file_id(glove_path)] + ([_file_id(glove_path[:-4] + ".json")] if kind == "npy" and
                                        os.path.isfile(glove_path[:-4] + ".json") else [])
        return kind, glove_path, f"{kind}:{json.dumps(ids)}"
    model = getattr(cfg, "GLOVE_SPACY_MODEL", None)
    if model and _installed("spacy") and (os.path.isdir(model) or _installed(model)):
        return "spacy", model, f"spacy:{model}:{_package_version(model)}"
    spacy_part = (f"the spaCy model '{model}' is not installed" if model else "GLOVE_SPACY_MODEL is not set")
    warn_once(
        f"USE_GLOVE is True but no word vectors were found (GLOVE_PATH is not set and {spacy_part}): the word "
        "embedding starts from random values. To use GloVe, set GLOVE_PATH to a GloVe text file (e.g. "
        "glove.840B.300d.txt) or to an aligned .npy with its vocabulary .json beside it, or install spaCy and a vectors "
        "model and set GLOVE_SPACY_MODEL; set USE_GLOVE False to silence this.", log)
    return "random", None, f"random:{RANDOM_SEED}"


def _installed(module):
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _package_version(name):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:  # a model given as a folder, or metadata missing: the name alone keys the cache
        return "unknown"


def random_embedding(n, dim):
    """N(0, 1) rows (the frameworks' default Embedding init), from a fixed seed so both backends get the same."""
    return np.random.default_rng(RANDOM_SEED).standard_normal((n, dim)).astype(np.float32)


def _from_txt(path, words, dim):
    """Rows from a GloVe text file; the literal 'PAD', 'UNK', 'CLS' for rows 0..2 as the original; zeros if absent."""
    wanted = set(words)
    found = {}
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        first = True
        for number, line in enumerate(f, start=1):
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if first:
                first = False
                if len(parts) == 2 and all(p.isdigit() for p in parts):
                    first = True  # a word2vec/fastText header "count dim"
                    continue
                if len(parts) - 1 != dim:
                    raise ValueError(f"GLOVE_PATH {path}: vectors have {len(parts) - 1} values, expected "
                                     f"WORD_EMBED_SIZE={dim} (lines 'word v1 ... v{dim}')")
            if len(parts) < dim + 1:       # more is a word with spaces (a few GloVe 840B entries); fewer is damage
                raise ValueError(f"GLOVE_PATH {path}, line {number}: {len(parts) - 1} values after "
                                 f"{parts[0]!r}, expected {dim} (lines 'word v1 ... v{dim}'; a truncated file?)")
            # the vector is always the last ``dim`` fields
            word = " ".join(parts[:-dim])
            if word in wanted and word not in found:
                try:
                    found[word] = np.asarray(parts[-dim:], dtype=np.float32)
                except ValueError as exc:
                    raise ValueError(f"GLOVE_PATH {path}, line {number} ({word!r}): {exc}") from None
    return _assemble(words, found, dim, path)


def _from_aligned_npy(path, words, dim):
    vocab_path = path[:-4] + ".json"
    if not os.path.isfile(vocab_path):
        raise FileNotFoundError(f"GLOVE_PATH {path}: its vocabulary {vocab_path} is missing (expected a json "
                                f"token->row dict, or a list of tokens in row order)")
    matrix = _read_npy(path, "GLOVE_PATH")
    if matrix.ndim != 2 or matrix.shape[1] != dim:
        raise ValueError(f"GLOVE_PATH {path}: expected a (tokens, WORD_EMBED_SIZE={dim}) matrix, got {matrix.shape}")
    vocab = load_json(vocab_path)
    if isinstance(vocab, dict) and isinstance(vocab.get("token_to_ix"), dict):
        vocab = vocab["token_to_ix"]
    if isinstance(vocab, list):
        vocab = {w: i for i, w in enumerate(vocab)}
    if not isinstance(vocab, dict) or any(not 0 <= int(i) < len(matrix) for i in vocab.values()):
        raise ValueError(f"{vocab_path}: expected a token->row dict (rows < {len(matrix)}) or a list of tokens")
    found = {w: matrix[int(vocab[w])] for w in words if w in vocab}
    return _assemble(words, found, dim, path)


def _from_spacy(model, words, dim):
    import spacy  # optional dependency, imported only when a model is installed
    nlp = spacy.load(model)
    # Doc.vector = mean of the token vectors (zeros when out of vocabulary), as the original's spacy_tool(word).vector;
    # make_doc runs the tokenizer only, which is all the vector needs.
    rows = [np.asarray(nlp.make_doc(w).vector, dtype=np.float32) for w in words]
    if rows and rows[0].shape != (dim,):
        raise ValueError(f"GLOVE_SPACY_MODEL {model}: vectors have shape {rows[0].shape}, WORD_EMBED_SIZE is {dim}")
    return np.stack(rows) if rows else np.zeros((0, dim), np.float32)


def _assemble(words, found, dim, source):
    emb = np.zeros((len(words), dim), np.float32)
    for i, w in enumerate(words):
        if w in found:
            emb[i] = found[w]
    have = sum(w in found for w in words)
    log.info(f"word vectors from {source}: {have} of {len(words)} vocabulary words have one; the other "
             f"{len(words) - have} start at zero")
    if words and have < 0.5 * len(words):
        warn_once(f"{source} has vectors for only {have} of {len(words)} vocabulary words: the wrong file, or "
                  "vectors of another tokenisation?", log)
    return emb


def _read_npy(path, what):
    """The array of a .npy file; never a pickle (a .npy holding objects is refused, naming the file)."""
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        reason = ("it holds Python objects (a pickle), not a matrix of numbers" if "allow_pickle" in str(exc)
                  else str(exc))
        raise ValueError(f"{what} {path}: cannot read a .npy matrix: {reason}") from None


def _save_npy(path, array):
    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write_bytes(path, buf.getvalue())
