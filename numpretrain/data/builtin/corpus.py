"""The built-in corpus: a seeded generator of documents about a small Chinese mini world.

The demos must run with no network, so the project writes its own text.  Each
document is a short, coherent story of a few sentences (a day in a diary, a
doctor at work, a trip to a city, a review ...) whose sentences follow one
another in a natural order around one topic, so that a sentence's true
successor is recognisable (next sentence prediction).  The text contains the
phenomena that explain why language modelling teaches a model language, and
probes.py lists prompts that measure them:

    grammar        「今天天气很」 is followed by an adjective, 「我昨天去了」 by a place
    semantics      「医生拿起了」 by 听诊器 or 手术刀, never by 吉他 or 画笔
    common sense   「雨下得很大，所以我带了」 by 雨伞, 「太阳很大，所以我带了」 by 太阳镜
    context        苹果 the fruit (很甜) and 苹果 the company (发布了新手机，价格很贵)
    fill-mask      「我昨天去了[MASK][MASK]大学参观」: 北京 most often, the city of the trip when named
    sentiment      reviews whose closing reveals the polarity of their adjectives (reviews.py)

The on-disk format (corpus_text) is one sentence per line and a blank line
between documents; users can supply their own text in the same format.

Measured at 40k documents with half of them reviews: about 2.1 M characters
(5.8 MB of UTF-8, as a Chinese character takes 3 bytes) over about 390
distinct characters, generated in about 0.3 s; review-only text is about
1.6 M characters over about 210.
"""

import numpy as np

from numpretrain.data.builtin.reviews import review_document
from numpretrain.data.builtin.world import (
    APPLE_PRODUCTS,
    APPLE_TASTES,
    CITIES,
    COMPANIONS,
    INDOOR_PLACES,
    OUTDOOR_PLACES,
    PLACES,
    PROFESSIONS,
    SURNAMES,
    WEATHERS,
    WeightedChoice,
    pick,
)

OUTDOOR_PLACE_NAMES = tuple(OUTDOOR_PLACES)
INDOOR_PLACE_NAMES = tuple(INDOOR_PLACES)
PLACE_NAMES = tuple(PLACES)
WEATHER_NAMES = tuple(WEATHERS)
PROFESSION_NAMES = tuple(PROFESSIONS)
PROFESSION_TOOLS = {name: tuple(profession.tools) for name, profession in PROFESSIONS.items()}

choose_city = WeightedChoice([(name, city.weight) for name, city in CITIES.items()])
choose_university_in = {name: WeightedChoice(city.universities) for name, city in CITIES.items()}
# any university, as often as trips to its city and visits within the city make it
choose_university = WeightedChoice([(university, city.weight * weight)
                                    for city in CITIES.values() for university, weight in city.universities])


# ----------------------------------------------------------------------------
# one writer per kind of document; each returns a list of sentences

def diary(rng: np.random.Generator) -> list:
    """A day: the weather and what it made me take, where I went, what we did, home."""
    weather = WEATHERS[pick(rng, WEATHER_NAMES)]
    # fine days send people outdoors, rain and cold indoors (common sense too)
    places = OUTDOOR_PLACES if weather.outdoors else INDOOR_PLACES
    place = pick(rng, OUTDOOR_PLACE_NAMES if weather.outdoors else INDOOR_PLACE_NAMES)
    sentences = [
        weather.announcement,
        pick(rng, weather.consequences),
        f"早上我和{pick(rng, COMPANIONS)}一起去了{place}。",
        pick(rng, places[place]).format(we="我们"),
    ]
    if rng.random() < 0.5:
        sentences.append("中午我们在外面吃了午饭。")
    sentences.append(pick(rng, ("晚上我们一起回到了家。", "晚上回家以后，我很早就睡觉了。", "傍晚我们才回家，今天过得很开心。")))
    return sentences


def yesterday(rng: np.random.Generator) -> list:
    """Yesterday's outing: where I went, with whom, what we did, how it ended."""
    place = pick(rng, PLACE_NAMES)
    sentences = [f"我昨天去了{place}。"]
    we = "我"
    if rng.random() < 0.5:
        sentences.append(f"{pick(rng, COMPANIONS)}也和我一起去了。")
        we = "我们"
    sentences.append(pick(rng, PLACES[place]).format(we=we))
    sentences.append(pick(rng, (f"{we}玩得很开心。", f"天黑以后{we}才回家。")))
    return sentences


def sick_day(rng: np.random.Generator) -> list:
    """Falling ill: to the hospital, the doctor and the stethoscope, getting better."""
    doctor = pick(rng, SURNAMES) + "医生"
    return [
        "我昨天感冒了，头很疼。",
        "我生病了，所以我去了医院。",
        f"{doctor}拿起了听诊器，给我检查身体。",
        f"{doctor}让我多喝水，多休息。",
        "过了两天，我的病就好了。",
    ]


def working_day(rng: np.random.Generator) -> list:
    """A worker's day: the workplace, the tool of the trade and its work, the result."""
    profession_name = pick(rng, PROFESSION_NAMES)
    profession = PROFESSIONS[profession_name]
    who = pick(rng, SURNAMES) + profession_name
    tool = pick(rng, PROFESSION_TOOLS[profession_name])
    return [
        f"{who}在{profession.workplace}工作。",
        f"今天早上{who}很早就到了{profession.workplace}。",
        f"{who}拿起了{tool}，开始{profession.tools[tool]}。",
        profession.result.format(who=who) + "。",
        f"晚上{who}回家休息了。",
    ]


def city_trip(rng: np.random.Generator) -> list:
    """A trip to a city: the city, its university, another place there, going home."""
    city = choose_city(rng)
    university = choose_university_in[city](rng)
    if rng.random() < 0.5:
        sentences = [f"这个周末我在{city}旅行。", f"我昨天去了{university}大学参观。"]
    else:
        # the city in the same sentence, so a fill-mask model sees it in a short window
        sentences = [f"我在{city}旅行，昨天去了{university}大学参观。"]
    sentences += [
        f"{university}大学的校园很大，有很多学生。",
        f"今天我去了{city}的{pick(rng, PLACE_NAMES)}。",
        "明天我就要坐火车回家了。",
    ]
    return sentences


def student(rng: np.random.Generator) -> list:
    """A pupil who dreams of a university and went to see it."""
    university = choose_university(rng)
    return [
        "我是一名高中生。",
        f"我的梦想是考上{university}大学。",
        f"我昨天去了{university}大学参观。",
        f"{university}大学的图书馆很大。",
        "我一定要努力学习。",
    ]


def apple_fruit(rng: np.random.Generator) -> list:
    """苹果 the fruit: bought, eaten, sweet."""
    return [
        pick(rng, ("妈妈从水果店买了一些苹果。", "我在超市买了几个苹果。")),
        f"我吃了一个苹果，很{pick(rng, APPLE_TASTES)}。",
        "妈妈说多吃水果对身体好。",
        "明天我还想吃苹果。",
    ]


def apple_company(rng: np.random.Generator) -> list:
    """苹果 the company: a new product, expensive, queues."""
    product = pick(rng, APPLE_PRODUCTS)
    measure = "部" if product == "手机" else "台"
    return [
        f"苹果公司发布了新{product}，价格很贵。",
        "很多人在商店门口排队购买。",
        f"{pick(rng, SURNAMES)}先生也买了一{measure}新{product}。",
        f"他说苹果的新{product}很好用。",
    ]


# how often each kind of document is written, among the non-review documents
choose_story = WeightedChoice([
    (diary, 0.25),
    (yesterday, 0.12),
    (sick_day, 0.08),
    (working_day, 0.25),
    (city_trip, 0.1),
    (student, 0.06),
    (apple_fruit, 0.07),
    (apple_company, 0.07),
])


# ----------------------------------------------------------------------------
# the public entry points

def generate_documents(n_documents: int = 40_000, seed: int = 0, review_share: float = 0.5) -> list:
    """`n_documents` documents, each a list of sentences ending in their punctuation.

    Each document is a review with probability `review_share` (1.0 gives
    review-only text, 0.0 no reviews) and otherwise one of the stories above.
    The same seed gives the same documents.
    """
    if n_documents < 0:
        raise ValueError(f"n_documents must be >= 0, got {n_documents}")
    if not 0.0 <= review_share <= 1.0:
        raise ValueError(f"review_share must be between 0 and 1, got {review_share}")
    rng = np.random.default_rng(seed)
    documents = []
    for _ in range(n_documents):
        if rng.random() < review_share:
            documents.append(review_document(rng))
        else:
            documents.append(choose_story(rng)(rng))
    return documents


def corpus_text(documents: list) -> str:
    """The on-disk format: one sentence per line, a blank line between documents."""
    return "\n\n".join("\n".join(sentences) for sentences in documents) + "\n"
