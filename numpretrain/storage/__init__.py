"""numpretrain.storage: everything that reads or writes files.

    atomic.py   write to a temporary file, fsync, rename: a crash never leaves half a file
    json_files.py  every JSON file and JSON line we read: size, UTF-8, nesting, numbers, a schema
    formats.py  safetensors (no pickle), RNG states as JSON
    runs.py     run folders: config.json + tokenizer.json + model.safetensors, load_pretrained
    hf.py       Hugging Face GPT-2 and BERT folders in and out, by the name tables of hf_names.py
    hf_names.py one table of names per architecture, and the config.json fields each way (docs/weights.md)

atomic.py, json_files.py and formats.py import nothing of ours but errors (tokenizers and the trainer build on
them); runs.py, hf.py and hf_names.py build models and tokenizers from files, so they sit above those.
"""
