"""numpretrain.training: the loop and what it steps.

    trainer.py     the one training loop (GPT, BERT, fine-tuning): lr, eval, forward, backward,
                   clip, step, log, checkpoint; exact resume
    optimizers.py  AdamW (and its update written as its formula), clip_grad_norm
    schedules.py   the learning-rate schedule: linear warm-up, cosine decay

Imports: errors, speed, autograd, storage's atomic.py and formats.py.
"""
