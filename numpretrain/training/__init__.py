"""numpretrain.training: the loop and what it steps.

    trainer.py     the one training loop (GPT, BERT, fine-tuning): lr, eval, forward, backward,
                   clip, step, log, checkpoint; exact resume
    optimizers.py  AdamW (and its update written as its formula), clip_grad_norm
    schedules.py   the learning-rate schedule: linear warm-up, cosine decay
    metrics_log.py metrics.jsonl: appended as training goes, brought back to the checkpoint on resume
    data_parallel.py  under mpiexec: each rank's share of a step's batch, and the ranks' gradients
                   summed in one fixed order through one flat buffer (mpi4py, imported only there)

Imports: errors, speed, autograd, storage's atomic.py, json_files.py and formats.py.
"""
