"""Reviews: the unlabelled review documents, and the labelled sets for fine-tuning.

A review is about one venue of one domain (a restaurant, a hotel, a film, a
shop): an optional opening sentence, one to three aspect sentences whose
sentiment is carried by one adjective each, and, in the unlabelled corpus
only, a closing sentence that states the polarity outright (我还会再来 /
再也不来了).  Every review has one polarity.  Pretraining on such text teaches
a language model which adjectives go with which closings, that is, each
adjective's polarity, without a single label.

The labelled sets reuse the opening and aspect sentences without the closing.
The adjectives of each polarity are split, by a seed, into a labelled half
(train and control) and a held-out half (test).  Domain, venue, templates and
length are drawn independently of the label, so the adjective is the only
evidence; the held-out texts share no character with the labelled adjectives.
"""

from dataclasses import dataclass

import numpy as np

from numpretrain.data.builtin.world import (
    LABEL_NAMES,
    NEGATIVE_CLOSINGS,
    POSITIVE_CLOSINGS,
    SENTIMENT_WORDS,
    pick,
)


@dataclass(frozen=True)
class ReviewDomain:
    """What reviews of one kind of venue talk about."""

    venues: tuple    # names of the venues reviewed
    subject: str     # how a review refers back to the venue ("这家餐厅")
    openings: tuple  # opening sentences, {venue} is the venue
    aspects: tuple   # the things the adjectives describe


REVIEW_DOMAINS = {
    "restaurant": ReviewDomain(
        venues=("江南饭馆", "小王饭馆", "海边餐厅", "东方餐厅"),
        subject="这家餐厅",
        openings=("上周我和朋友去了{venue}吃饭。", "我在{venue}吃了一顿晚饭。"),
        aspects=("菜", "汤", "米饭", "服务", "环境"),
    ),
    "hotel": ReviewDomain(
        venues=("东方酒店", "长江宾馆", "山水酒店", "海边宾馆"),
        subject="这家酒店",
        openings=("上个月我在{venue}住了两晚。", "我旅行的时候住在{venue}。"),
        aspects=("房间", "床", "早餐", "前台", "大堂"),
    ),
    "film": ReviewDomain(
        venues=("《回家》", "《大海》", "《远方》", "《明天》"),
        subject="这部电影",
        openings=("我昨天去电影院看了{venue}。", "周末我和同学一起看了{venue}。"),
        aspects=("剧情", "画面", "音乐", "演员", "结局"),
    ),
    "shop": ReviewDomain(
        venues=("小李书店", "东方商场", "江南商店", "小王商店"),
        subject="这家店",
        openings=("我今天去{venue}买东西。", "上周我在{venue}逛了一下午。"),
        aspects=("衣服", "商品", "店员", "包装", "货架"),
    ),
}
DOMAIN_NAMES = tuple(REVIEW_DOMAINS)

DEGREES = ("很", "非常", "特别", "十分", "真的很")

# A cloze question on a review for a BERT (finetune --pooling cloze): the closings 非常失望 and
# 非常满意 differ only after 非常, so what the MLM head expects there is its guess at the polarity.
REVIEW_CLOZE = "{text}非常[MASK][MASK]。"
REVIEW_VERBALIZERS = ("失望", "满意")    # in LABEL_NAMES order: negative, positive


# ----------------------------------------------------------------------------
# sentences

def aspect_sentence(rng: np.random.Generator, domain: ReviewDomain, venue: str,
                    aspect: str, adjective: str, first: bool) -> str:
    """One sentence that judges one aspect with one adjective."""
    degree = pick(rng, DEGREES)
    template = int(rng.random() * 4)
    if template == 0:
        return f"{domain.subject}的{aspect}{degree}{adjective}。"
    if template == 1:
        return f"{venue}的{aspect}{degree}{adjective}。"
    if template == 2:
        return f"我觉得{aspect}{degree}{adjective}。"
    # "也" ("also") only reads right after an earlier judgement
    return f"{aspect}{degree}{adjective}。" if first else f"{aspect}也{degree}{adjective}。"


def review_body(rng: np.random.Generator, adjectives: tuple, opening_prob: float = 0.5) -> list:
    """The sentences of a review without its closing, judging with `adjectives`.

    Everything but the adjectives (domain, venue, opening, number of aspects,
    templates, degree words) is drawn the same way whatever the adjectives,
    so a labelled set built from bodies carries its label in the adjectives
    alone.
    """
    domain = REVIEW_DOMAINS[pick(rng, DOMAIN_NAMES)]
    venue = pick(rng, domain.venues)
    sentences = []
    if rng.random() < opening_prob:
        sentences.append(pick(rng, domain.openings).format(venue=venue))
    n_aspects = 1 + int(rng.random() * 3)
    # distinct aspects, in a random order (a partial Fisher-Yates shuffle)
    aspects = list(domain.aspects)
    for i in range(n_aspects):
        j = i + int(rng.random() * (len(aspects) - i))
        aspects[i], aspects[j] = aspects[j], aspects[i]
        sentences.append(aspect_sentence(rng, domain, venue, aspects[i], pick(rng, adjectives), first=(i == 0)))
    return sentences


def review_document(rng: np.random.Generator) -> list:
    """An unlabelled review: one polarity, all its adjectives, and a closing that reveals it."""
    polarity = LABEL_NAMES[int(rng.random() * 2)]
    closings = POSITIVE_CLOSINGS if polarity == "positive" else NEGATIVE_CLOSINGS
    sentences = review_body(rng, SENTIMENT_WORDS[polarity], opening_prob=0.7)
    sentences.append(pick(rng, closings) + "。")
    return sentences


# ----------------------------------------------------------------------------
# the labelled sets

def split_adjectives(seed: int = 0) -> tuple:
    """Split each polarity's adjectives into a labelled half and a held-out half.

    Returns (train_adjectives, heldout_adjectives), each a dict from polarity
    ("positive", "negative") to a tuple of adjectives in SENTIMENT_WORDS order.
    The split is a function of `seed` alone.
    """
    rng = np.random.default_rng(seed)
    train, heldout = {}, {}
    for polarity in ("positive", "negative"):
        words = SENTIMENT_WORDS[polarity]
        labelled = set(rng.permutation(len(words))[: len(words) // 2].tolist())
        train[polarity] = tuple(w for i, w in enumerate(words) if i in labelled)
        heldout[polarity] = tuple(w for i, w in enumerate(words) if i not in labelled)
    return train, heldout


@dataclass
class ReviewData:
    """Labelled reviews: each split a list of (text, label), label 1 positive, 0 negative.

    train    reviews with the labelled adjectives (fine-tuning data)
    test     reviews with the held-out adjectives only: no labelled adjective,
             no character of one, no closing phrase
    control  new reviews with the labelled adjectives (shows the task itself is learnable)
    """

    train: list
    test: list
    control: list
    train_adjectives: dict
    heldout_adjectives: dict


def labelled_reviews(rng: np.random.Generator, adjectives: dict, n: int, exclude=frozenset()) -> list:
    """`n` (text, label) pairs, half of each label (the extra one positive when n is odd), shuffled.

    A text is the body of a review, its sentences joined with nothing.
    Texts in `exclude` are drawn again, so a control set can avoid repeating
    the training texts.
    """
    labels = [1] * (n - n // 2) + [0] * (n // 2)
    labels = [labels[i] for i in rng.permutation(n)]
    examples = []
    for label in labels:
        text = "".join(review_body(rng, adjectives[LABEL_NAMES[label]]))
        while text in exclude:
            text = "".join(review_body(rng, adjectives[LABEL_NAMES[label]]))
        examples.append((text, label))
    return examples


def review_dataset(seed: int = 0, n_train: int = 256, n_test: int = 512, n_control: int = 512) -> ReviewData:
    """The labelled review sets for the adjective split of `seed` (see ReviewData)."""
    train_adjectives, heldout_adjectives = split_adjectives(seed)
    train_rng, test_rng, control_rng = (np.random.default_rng([seed, stream]) for stream in (1, 2, 3))
    train = labelled_reviews(train_rng, train_adjectives, n_train)
    test = labelled_reviews(test_rng, heldout_adjectives, n_test)
    control = labelled_reviews(control_rng, train_adjectives, n_control,
                               exclude=frozenset(text for text, _ in train))
    return ReviewData(train, test, control, train_adjectives, heldout_adjectives)
