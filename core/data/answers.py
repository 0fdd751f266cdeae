"""VQA answer normalisation (the official VQA evaluation's rules, quirks kept), soft scores and answer lists.

process_punctuation and process_digit_article are shared with core.evaluation, which applies them as the official
evaluator does; prep_ans (both, then commas removed) is what training targets use.
"""
import json
import os
import re

import numpy as np

ANSWER_DICT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "answer_dict.json")

# The evaluator's contraction table, verbatim, including its oddities ("somebody'd" -> "somebodyd", capitalised
# keys such as "Im" that never match lower-cased text). Pairs "key value", separated by two spaces.
_CONTRACTION_TABLE = """
aint ain't  arent aren't  cant can't  couldve could've
couldnt couldn't  couldn'tve couldn't've  couldnt've couldn't've  didnt didn't
doesnt doesn't  dont don't  hadnt hadn't  hadnt've hadn't've
hadn'tve hadn't've  hasnt hasn't  havent haven't  hed he'd
hed've he'd've  he'dve he'd've  hes he's  howd how'd
howll how'll  hows how's  Id've I'd've  I'dve I'd've
Im I'm  Ive I've  isnt isn't  itd it'd
itd've it'd've  it'dve it'd've  itll it'll  let's let's
maam ma'am  mightnt mightn't  mightnt've mightn't've  mightn'tve mightn't've
mightve might've  mustnt mustn't  mustve must've  neednt needn't
notve not've  oclock o'clock  oughtnt oughtn't  ow's'at 'ow's'at
'ows'at 'ow's'at  'ow'sat 'ow's'at  shant shan't  shed've she'd've
she'dve she'd've  she's she's  shouldve should've  shouldnt shouldn't
shouldnt've shouldn't've  shouldn'tve shouldn't've  somebody'd somebodyd  somebodyd've somebody'd've
somebody'dve somebody'd've  somebodyll somebody'll  somebodys somebody's  someoned someone'd
someoned've someone'd've  someone'dve someone'd've  someonell someone'll  someones someone's
somethingd something'd  somethingd've something'd've  something'dve something'd've  somethingll something'll
thats that's  thered there'd  thered've there'd've  there'dve there'd've
therere there're  theres there's  theyd they'd  theyd've they'd've
they'dve they'd've  theyll they'll  theyre they're  theyve they've
twas 'twas  wasnt wasn't  wed've we'd've  we'dve we'd've
weve we've  werent weren't  whatll what'll  whatre what're
whats what's  whatve what've  whens when's  whered where'd
wheres where's  whereve where've  whod who'd  whod've who'd've
who'dve who'd've  wholl who'll  whos who's  whove who've
whyll why'll  whyre why're  whys why's  wont won't
wouldve would've  wouldnt wouldn't  wouldnt've wouldn't've  wouldn'tve wouldn't've
yall y'all  yall'll y'all'll  y'allll y'all'll  yall'd've y'all'd've
y'alld've y'all'd've  y'all'dve y'all'd've  youd you'd  youd've you'd've
you'dve you'd've  youll you'll  youre you're  youve you've
"""
CONTRACTIONS = dict(pair.split(" ") for line in _CONTRACTION_TABLE.strip().splitlines() for pair in line.split("  "))

NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = ("a", "an", "the")
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")

# The look-behind is misspelt "(?!<=" in the original, so it is a look-ahead for the text "<=" and never blocks:
# every '.' not followed by a digit is removed.
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_DIGIT_COMMA_DIGIT = re.compile(r"(\d)(,)(\d)")
# The original passes re.UNICODE (= 32) in sub()'s count slot: at most 32 periods are removed.
_PERIOD_STRIP_COUNT = int(re.UNICODE)


def process_punctuation(text):
    """Delete or space out punctuation, then strip periods not followed by a digit (at most 32 of them).

    A mark is deleted when it touches a space somewhere in the ORIGINAL text, or when that text contains
    digit,digit anywhere; otherwise it becomes a space.
    """
    out = text
    has_digit_comma = _DIGIT_COMMA_DIGIT.search(text) is not None
    for p in PUNCTUATION:
        if p + " " in text or " " + p in text or has_digit_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out, count=_PERIOD_STRIP_COUNT)


def process_digit_article(text):
    """Lower-case, number words to digits, drop articles, expand contractions, single spaces."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in ARTICLES]
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def prep_ans(answer):
    """Training-target normalisation: punctuation, digits/articles, then every remaining comma deleted."""
    return process_digit_article(process_punctuation(answer)).replace(",", "")


_BCE_SCORE = (0.0, 0.3, 0.6, 0.9)


def score_for_count(count):
    """0, .3, .6, .9 for 0..3 annotators, 1 from 4 on (= min(1, 0.3 * count), the leave-one-out VQA accuracy)."""
    return _BCE_SCORE[count] if count < 4 else 1.0


def answer_counts(answers):
    """Normalised answer -> how many of the human answers (dicts with 'answer', or strings) give it."""
    counts = {}
    for a in answers:
        key = prep_ans(a["answer"] if isinstance(a, dict) else a)
        counts[key] = counts.get(key, 0) + 1
    return counts


def soft_scores(answers, ans_to_ix, loss_func="bce"):
    """np.float32 (len(ans_to_ix),): bce -> score_for_count(count); kld -> count / 10. Unknown answers are ignored."""
    target = np.zeros(len(ans_to_ix), np.float32)
    for ans, count in answer_counts(answers).items():
        ix = ans_to_ix.get(ans)
        if ix is None:
            continue
        target[ix] = count / 10.0 if loss_func == "kld" else score_for_count(count)
    return target


def without_target(answer_lists, ans_to_ix):
    """How many of the samples (each a list of human answers, as soft_scores takes them) have no answer in
    ``ans_to_ix``, i.e. an all-zero training target; each distinct answer text is normalised once."""
    known = {}

    def in_list(answer):
        text = answer.get("answer") if isinstance(answer, dict) else answer
        if not isinstance(text, str):
            return False
        if text not in known:
            known[text] = prep_ans(text) in ans_to_ix
        return known[text]

    return sum(not any(in_list(a) for a in answers) for answers in answer_lists)


def check_targets(answer_lists, ans_to_ix, source, warn):
    """Refuse training data none of whose samples has an answer in the answer list (it would train on all-zero
    targets); ``warn`` when most have none. ``source`` names the data (its annotation files)."""
    total = len(answer_lists)
    missing = without_target(answer_lists, ans_to_ix)
    if total and missing == total:
        raise ValueError(f"{source}: none of the {total} training questions has an answer in the answer list "
                         f"({len(ans_to_ix)} answers, core/data/answer_dict.json): every target would be zero; "
                         "check the annotations' 'answers'")
    if missing * 2 > total:
        warn(f"{source}: {missing} of {total} training questions have no answer in the answer list "
             f"({len(ans_to_ix)} answers, core/data/answer_dict.json) and train towards an all-zero target")
    return missing


def load_answer_dict(path=ANSWER_DICT_PATH):
    """(ans_to_ix {answer: int}, ix_to_ans {int: answer}) from the shipped 3129-answer json [ans_to_ix, ix_to_ans]."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not (isinstance(data, list) and len(data) == 2 and all(isinstance(d, dict) for d in data)):
        raise ValueError(f"{path}: expected a json list [ans_to_ix, ix_to_ans]")
    ans_to_ix = {a: int(i) for a, i in data[0].items()}
    ix_to_ans = {int(i): a for i, a in data[1].items()}
    if any(ans_to_ix.get(a) != i for i, a in ix_to_ans.items()) or len(ans_to_ix) != len(ix_to_ans):
        raise ValueError(f"{path}: ans_to_ix and ix_to_ans disagree")
    return ans_to_ix, ix_to_ans


def answers_in_order(values):
    """(ans_to_ix, ix_to_ans) over ``values`` in first-appearance order (CLEVR's answer list)."""
    ans_to_ix = {}
    for v in values:
        if v not in ans_to_ix:
            ans_to_ix[v] = len(ans_to_ix)
    return ans_to_ix, {i: a for a, i in ans_to_ix.items()}
