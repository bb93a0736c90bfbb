"""The built-in corpus: a seeded Chinese "mini world", generated on the fly (no download).

    world.py    the world's people, places and things, and what goes with what
    reviews.py  restaurant reviews with held-out adjectives, for fine-tuning
    corpus.py   documents of sentences from the two above
    probes.py   questions the corpus answers, to check what a model learned
    words.py    the words it is written with, for whole-word masking
"""
