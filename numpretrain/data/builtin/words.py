"""The built-in corpus's words, for whole-word masking with the character tokenizer.

Chinese is written without spaces, so a character tokenizer sees characters, not
words, and BERT's masking then hides one character of 北京 and leaves the other in
view: the model learns 京 after 北, not which city a sentence is about. Whole-word
masking (BERT's own later recipe; for Chinese, Cui et al. 2019, "BERT-wwm") chooses
whole words and hides all their characters. It needs a segmentation: BERT-wwm ran a
word segmenter (LTP) over its corpus. This corpus is written from known word lists,
so its words are known exactly: the names of its world (world.py, reviews.py) and the
common words of its sentence templates (corpus.py, reviews.py). Every word here
occurs in the corpus (tests/test_words.py checks it).

A university is its name and 大学 (北京 | 大学), as a fine-grained segmenter writes it,
so masking a name is 「[MASK][MASK]大学」, the source material's example.

Measured on this corpus, whole-word masking did not help: the BERTs it trained never learned
the far context (README, "BERT's recipe, one factor at a time"). It is there to try with
`pretrain-bert --words builtin`, and entity masking (the names alone, `entity_words`) with
`--words entities`, which did not make the transfer surer either; the default masks characters
one by one.
"""

from numpretrain.data.builtin.reviews import REVIEW_DOMAINS
from numpretrain.data.builtin.world import (
    APPLE_PRODUCTS,
    CITIES,
    COMPANIONS,
    PLACES,
    PROFESSIONS,
    SENTIMENT_WORDS,
    UNIVERSITIES,
)

# The common words of the sentence templates, in the order the generators write them.
TEMPLATE_WORDS = (
    # diaries and outings
    "今天", "天气", "凉快", "下雨", "太阳", "太阳镜", "外面", "所以", "短袖", "外套", "大衣", "雨伞",
    "早上", "一起", "我们", "中午", "午饭", "晚上", "回家", "以后", "睡觉", "傍晚", "开心", "昨天",
    "散步", "大熊猫", "动物", "游泳", "大海", "下午", "古代", "文物", "电影", "面包", "苹果",
    # a sick day, a working day
    "感冒", "生病", "医院", "检查", "身体", "休息", "工作", "开始", "病人", "手术", "感谢", "山水画",
    "新歌", "观众", "鼓掌", "客人", "黑板", "写字", "学生", "上课", "头发", "镜子",
    # trips, students, 苹果
    "周末", "旅行", "参观", "大学", "校园", "明天", "火车", "高中生", "梦想", "图书馆", "一定", "努力",
    "学习", "妈妈", "水果", "公司", "发布", "价格", "商店", "门口", "排队", "购买", "先生",
    # reviews
    "餐厅", "酒店", "朋友", "吃饭", "晚饭", "上个月", "时候", "电影院", "同学",
    "东西", "非常", "特别", "十分", "觉得", "推荐", "下次", "后悔", "大家", "这里", "满意", "失望",
)


def entity_words() -> tuple:
    """The names in the built-in corpus's world of two or more characters: people, places, cities,
    universities, professions, their workplaces and tools, products, venues. Masking these whole
    and every other character one by one is ERNIE's entity-level masking (Sun et al. 2019)."""
    names = [
        *COMPANIONS, *APPLE_PRODUCTS, "苹果", *PLACES, *CITIES, *UNIVERSITIES,
        *PROFESSIONS, *(p.workplace for p in PROFESSIONS.values()),
        *(tool for p in PROFESSIONS.values() for tool in p.tools),
        *(venue.strip("《》") for domain in REVIEW_DOMAINS.values() for venue in domain.venues),
    ]
    return tuple(dict.fromkeys(word for word in names if len(word) >= 2))


def builtin_words() -> tuple:
    """The built-in corpus's words of two or more characters (its world's names and its
    templates' common words), each once."""
    names = [
        *SENTIMENT_WORDS["positive"], *SENTIMENT_WORDS["negative"], *entity_words(),
        *(aspect for domain in REVIEW_DOMAINS.values() for aspect in domain.aspects),
    ]
    return tuple(dict.fromkeys(word for word in [*names, *TEMPLATE_WORDS] if len(word) >= 2))
