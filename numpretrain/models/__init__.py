"""numpretrain.models: the two pretrained models and the heads that fine-tune them.

    config.py  what GPT's and BERT's configs share: size checks, the JSON round trip
    gpt.py     GPT (decoder-only, causal blocks, LM head tied to wte) and generation with a KV cache
    bert.py    BertModel and BertForPreTraining (MLM and next-sentence heads)
    heads.py   GPTClassifier and BertClassifier, for fine-tuning

Imports: errors, autograd and nn. Import the models from their files
(`from numpretrain.models.gpt import GPT`); this file imports nothing.
"""
