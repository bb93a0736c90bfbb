"""Probes: prompts whose right continuation the built-in corpus teaches, with wrong ones to compare.

A pretrained model is probed by comparing how likely it finds the expected
continuations of a prompt against the contrasting ones: a GPT by the
log-probability of the continuation after the prompt, a BERT by filling the
[MASK] placeholders of a fill-mask probe.  In the generated text every prompt
is followed by at least one expected continuation and never by a contrasting
one (tests/test_corpus.py checks both), so the difference is learnable and
measures what the model learned: grammar, semantics, common sense, context.
"""

from dataclasses import dataclass

from numpretrain.data.builtin.world import (
    APPLE_PRODUCTS,
    APPLE_TASTES,
    CITIES,
    PLACES,
    PROFESSIONS,
    UNIVERSITIES,
    WEATHERS,
)

MASK = "[MASK]"  # the placeholder of fill-mask probes, BERT's mask token


@dataclass(frozen=True)
class Probe:
    """A prompt, the continuations the corpus teaches after it, and ones it never shows.

    kind         "grammar", "semantics", "common sense", "context" or "fill mask"
    prompt       text a model continues; in a fill-mask probe, text with one
                 [MASK] per character of the answer
    expected     right continuations (right fillers)
    contrasting  continuations (fillers) that never follow the prompt
    """

    kind: str
    prompt: str
    expected: tuple
    contrasting: tuple

    def filled(self, answer: str) -> str:
        """The prompt with `answer` in place of its masks (fill-mask), or appended to it."""
        if MASK not in self.prompt:
            return self.prompt + answer
        n_masks = self.prompt.count(MASK)
        if len(answer) != n_masks:
            raise ValueError(f"answer {answer!r} has {len(answer)} characters for {n_masks} masks in {self.prompt!r}")
        text = self.prompt
        for character in answer:
            text = text.replace(MASK, character, 1)
        return text


def probes() -> list:
    """Continuation probes for a language model, several per phenomenon."""
    weather_adjectives = tuple(w.announcement[len("今天天气很"):-1] for w in WEATHERS.values()
                               if w.announcement.startswith("今天天气很"))
    found = [
        Probe("grammar", "今天天气很", weather_adjectives, ("北京", "雨伞", "医生", "苹果")),
        Probe("grammar", "我昨天去了", tuple(PLACES) + tuple(f"{u}大学" for u in UNIVERSITIES),
              ("很", "好", "雨伞", "吉他", "甜")),
        Probe("grammar", "在图书馆借了两本", ("书",), ("电影", "苹果", "医院")),
    ]
    all_tools = [tool for profession in PROFESSIONS.values() for tool in profession.tools]
    for name, profession in PROFESSIONS.items():
        tools = tuple(profession.tools)
        found.append(Probe("semantics", f"{name}拿起了", tools, tuple(t for t in all_tools if t not in tools)))
    found += [
        Probe("common sense", "雨下得很大，所以我带了", ("雨伞",), ("太阳镜",)),
        Probe("common sense", "太阳很大，所以我带了", ("太阳镜",), ("雨伞",)),
        Probe("common sense", "外面很冷，所以我穿了", ("大衣",), ("短袖",)),
        Probe("common sense", "外面很热，所以我穿了", ("短袖",), ("大衣", "外套")),
        Probe("common sense", "我生病了，所以我去了", ("医院",), ("公园", "电影院", "动物园")),
        Probe("context", "我吃了一个苹果，很", APPLE_TASTES, ("贵",)),
    ]
    for product in APPLE_PRODUCTS:
        found.append(Probe("context", f"苹果公司发布了新{product}，价格很", ("贵",), APPLE_TASTES))
    return found


def fill_mask_probes() -> list:
    """Fill-mask probes for a masked language model: one [MASK] per character of the answer."""
    # universities by how often the bare sentence names them, 北京 first
    frequency = {university: city.weight * weight
                 for city in CITIES.values() for university, weight in city.universities}
    by_frequency = tuple(sorted(UNIVERSITIES, key=lambda u: -frequency[u]))
    found = [Probe("fill mask", f"我昨天去了{MASK * 2}大学参观。", by_frequency, ("苹果", "医生", "公园"))]
    for city, info in CITIES.items():
        here = tuple(university for university, _ in info.universities)
        found.append(Probe("fill mask", f"我在{city}旅行，昨天去了{MASK * 2}大学参观。", here,
                           tuple(u for u in by_frequency if u not in here)))
    found += [
        Probe("fill mask", f"{MASK * 2}公司发布了新手机，价格很贵。", ("苹果",), ("北京", "医生")),
        Probe("fill mask", f"我吃了一个{MASK * 2}，很甜。", ("苹果",), ("手机", "电脑")),
        Probe("fill mask", f"医生拿起了{MASK * 3}，", ("听诊器", "手术刀"), ("小提琴", "太阳镜")),
        Probe("fill mask", f"雨下得很大，所以我带了{MASK * 2}。", ("雨伞",), ("大衣", "短袖")),
        Probe("fill mask", f"今天天气很{MASK}。", ("好", "热", "冷"), ("甜", "贵")),
    ]
    return found
