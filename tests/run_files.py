"""What a run folder holds, read back for tests that compare two runs bit for bit
(test_resume.py, test_reliability.py, test_data_parallel.py)."""

import json
import os

import numpy as np

from numpretrain.storage.formats import load_safetensors, load_safetensors_metadata

TIMING_FIELDS = ("tokens_per_sec", "elapsed")      # the only values that may differ between two runs


def final_state(run_dir):
    """Every tensor of the weights and of the training state, and the trainer state's JSON."""
    tensors = {f"model/{k}": v for k, v in load_safetensors(os.path.join(run_dir, "model.safetensors")).items()}
    state_path = os.path.join(run_dir, "training_state.safetensors")
    tensors.update({f"state/{k}": v for k, v in load_safetensors(state_path).items()})
    return tensors, json.loads(load_safetensors_metadata(state_path)["trainer_state"])


def metrics(run_dir):
    """metrics.jsonl's records without their timings."""
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        return [{k: v for k, v in json.loads(line).items() if k not in TIMING_FIELDS} for line in f]


def assert_same_run(expected_dir, actual_dir, context=""):
    """Weights, training state and metrics equal, bit for bit (equal arrays of equal dtype)."""
    (a, a_state), (b, b_state) = final_state(expected_dir), final_state(actual_dir)
    assert a.keys() == b.keys(), context
    for key in a:
        assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), f"{key} differs {context}"
    assert a_state == b_state, context                  # step, RNG states, optimizer step counts ...
    assert metrics(expected_dir) == metrics(actual_dir), context
