"""numpretrain: GPT and BERT pretraining and fine-tuning from scratch in pure NumPy."""
