"""The mini world of the built-in corpus: its word lists, and how to draw from them.

Everything the corpus generator (corpus.py), the review generator (reviews.py)
and the probes (probes.py) talk about is listed here once: places and what
people do there, professions and their tools, cities and their universities,
weather and what it makes you take along, and the sentiment words of the
reviews.  All of it was written for this project; no text is vendored.

The character vocabulary is kept deliberately small (a few hundred distinct
characters) so that a small model can learn the text well in minutes.

Sentiment words are the one delicate part.  The fine-tuning experiment
labels reviews written with half of the adjectives and tests on reviews
written with the other half, so that only knowledge gained in pretraining can
classify the test set.  That only holds if the halves share no character:
a bag-of-characters classifier would otherwise read the polarity off a shared
character.  So the 80 characters of the 40 adjectives are all distinct, and
none of them is used anywhere else in the corpus (tests check both).
"""

from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate

import numpy as np

# ----------------------------------------------------------------------------
# drawing from lists

def pick(rng: np.random.Generator, options):
    """One element of `options`, uniformly.

    `rng.random()` is about three times cheaper than `rng.integers(n)`, and
    generating 40k documents makes about a million draws.
    """
    return options[int(rng.random() * len(options))]


class WeightedChoice:
    """Draw from fixed options with fixed (unnormalised) weights."""

    def __init__(self, weighted_options):
        self.options = tuple(option for option, _ in weighted_options)
        self.cumulative = tuple(accumulate(weight for _, weight in weighted_options))

    def __call__(self, rng: np.random.Generator):
        return self.options[bisect_right(self.cumulative, rng.random() * self.cumulative[-1])]


# ----------------------------------------------------------------------------
# sentiment: labels, adjectives and the closings that reveal their polarity

LABEL_NAMES = ("negative", "positive")  # label 0 is negative, label 1 positive

SENTIMENT_WORDS = {
    "positive": (
        "美味", "精彩", "舒适", "干净", "优雅", "温馨", "实惠", "丰盛", "宽敞", "诚恳",
        "细腻", "整洁", "安静", "便捷", "醇厚", "震撼", "惊艳", "划算", "鲜嫩", "浪漫",
    ),
    "negative": (
        "肮脏", "粗糙", "嘈杂", "邋遢", "拥挤", "无聊", "糟糕", "恶劣", "简陋", "敷衍",
        "傲慢", "混乱", "陈旧", "潮湿", "拖沓", "腥臭", "虚假", "酸涩", "狭窄", "沉闷",
    ),
}

SENTIMENT_CHARACTERS = frozenset("".join(SENTIMENT_WORDS["positive"] + SENTIMENT_WORDS["negative"]))

# A review in the unlabelled text ends with one of these, as a sentence of its
# own followed by "。".  They are the only place where polarity is stated
# outright, so they teach a language model each adjective's polarity, and a
# pretrained GPT can be asked which closing it expects after a review.
POSITIVE_CLOSINGS = ("我还会再来", "推荐给朋友", "非常满意", "下次还要来")
NEGATIVE_CLOSINGS = ("再也不来了", "非常失望", "真后悔来这里", "劝大家别来")

# ----------------------------------------------------------------------------
# people

SURNAMES = ("王", "李", "张", "刘", "赵", "孙")
COMPANIONS = ("妈妈", "爸爸", "朋友", "同学")


@dataclass(frozen=True)
class Profession:
    """A profession: where it works, and each of its tools with what it is for."""

    workplace: str
    tools: dict  # tool -> the work that tool starts ("听诊器" -> "给病人检查身体")
    result: str  # how the working day ends, {who} is the worker


PROFESSIONS = {
    "医生": Profession("医院", {"听诊器": "给病人检查身体", "手术刀": "给病人做手术"},
                     "病人们都很感谢{who}"),
    "画家": Profession("画室", {"画笔": "画一幅山水画", "画板": "画大海"},
                     "{who}画完了一幅新画"),
    "音乐家": Profession("音乐厅", {"吉他": "弹一首新歌", "小提琴": "拉一首新歌"},
                      "台下的观众都在鼓掌"),
    "厨师": Profession("厨房", {"菜刀": "切菜", "锅铲": "炒菜"},
                     "客人们吃得很开心"),
    "老师": Profession("学校", {"粉笔": "在黑板上写字", "课本": "给学生们上课"},
                     "学生们都认真地听课"),
    "理发师": Profession("理发店", {"剪刀": "给客人剪头发", "梳子": "给客人梳头发"},
                      "客人看着镜子笑了"),
}

# ----------------------------------------------------------------------------
# weather, and what it makes you take along (common sense)

@dataclass(frozen=True)
class Weather:
    """A kind of day: how it is announced, what it makes you take, where you go."""

    announcement: str        # the diary's first sentence
    consequences: tuple      # the second sentence, one of these
    outdoors: bool           # fine days send people outdoors, bad ones indoors


WEATHERS = {
    "sunny": Weather("今天天气很好。", ("太阳很大，所以我带了太阳镜。",), True),
    "hot": Weather("今天天气很热。", ("外面很热，所以我穿了短袖。",), True),
    "cool": Weather("今天天气很凉快。", ("外面有一点风，所以我穿了外套。",), True),
    "cold": Weather("今天天气很冷。", ("外面很冷，所以我穿了大衣。",), False),
    "rainy": Weather("今天下雨了。", ("雨下得很大，所以我带了雨伞。",), False),
}

# ----------------------------------------------------------------------------
# places and what people do there ({we} is "我" or "我们")

OUTDOOR_PLACES = {
    "公园": ("{we}在公园里散步。", "{we}在公园里看花。"),
    "动物园": ("{we}在动物园看了大熊猫。", "{we}在动物园看了很多动物。"),
    "海边": ("{we}在海边游泳。", "{we}在海边看大海。"),
}
INDOOR_PLACES = {
    "图书馆": ("{we}在图书馆看了一下午书。", "{we}在图书馆借了两本书。"),
    "博物馆": ("{we}在博物馆看了很多古代的文物。",),
    "电影院": ("{we}在电影院看了一部电影。",),
    "超市": ("{we}在超市买了面包。", "{we}在超市买了几个苹果。"),
}
PLACES = {**OUTDOOR_PLACES, **INDOOR_PLACES}

# ----------------------------------------------------------------------------
# cities and their universities (the fill-mask example)

@dataclass(frozen=True)
class City:
    """A city: how often it is visited, and its universities (weighted)."""

    weight: float
    universities: tuple  # (name without "大学", weight) pairs


CITIES = {
    # 北京 is visited most, and 北京大学 is its most visited university, so
    # that 北京 is the best answer to 「我昨天去了[MASK][MASK]大学参观」 without
    # context while the city named before it decides the answer with context.
    "北京": City(0.5, (("北京", 0.7), ("清华", 0.3))),
    "上海": City(0.2, (("复旦", 1.0),)),
    "南京": City(0.15, (("南京", 1.0),)),
    "杭州": City(0.15, (("浙江", 1.0),)),
}

UNIVERSITY_CITY = {university: city for city, info in CITIES.items() for university, _ in info.universities}
UNIVERSITIES = tuple(UNIVERSITY_CITY)

# ----------------------------------------------------------------------------
# 苹果, the fruit and the company (context decides the sense)

APPLE_TASTES = ("甜", "脆")
APPLE_PRODUCTS = ("手机", "电脑")
