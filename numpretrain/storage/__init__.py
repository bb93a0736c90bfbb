"""numpretrain.storage: everything that reads or writes files.

    atomic.py   write to a temporary file, fsync, rename: a crash never leaves half a file
    json_files.py  every JSON file and JSON line we read: size, UTF-8, nesting, numbers, a schema
    formats.py  safetensors (no pickle), RNG states as JSON
    runs.py     run folders: config.json + tokenizer.json + model.safetensors, load_pretrained
    hf.py       Hugging Face GPT-2 and BERT folders in and out, by the name tables of hf_names.py
    hf_names.py one table of names per architecture, and the config.json fields each way (docs/weights.md)
    hf_classifier.py  fine-tuned classifiers as BertForSequenceClassification, GPT2ForSequenceClassification ...
    hf_tokenizers.py  our char and BPE tokenizers as Hugging Face tokenizer.json, both ways

atomic.py, json_files.py and formats.py import nothing of ours but errors (tokenizers and the trainer
build on them); runs.py and the hf*.py modules build models and tokenizers from files, so they sit above those.
"""
