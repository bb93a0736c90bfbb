"""Data-parallel training under a real `mpiexec -n 2` (training/data_parallel.py, app/mpi_job.py).

The defining property: N ranks end bit for bit where one process with --grad-accum N ends, the
weights file byte for byte, the optimizer's moments and every logged loss. Then the faults: a
rank killed mid-run ends the job at once, the last checkpoint loads, and resuming it under
another rank count continues exactly; a bad option is reported once; a failure of one rank alone
stops the job and names the rank. Skips without mpi4py or a launcher (the `mpi` extra).
"""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from run_files import metrics

pytest.importorskip("mpi4py")

from numpretrain.app import cli
from numpretrain.storage.formats import load_safetensors, load_safetensors_metadata
from numpretrain.training.trainer import checkpoint_step

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPIEXEC = next((path for path in (os.path.join(os.path.dirname(sys.executable), "mpiexec"), shutil.which("mpiexec"))
                if path and os.path.exists(path)), None)
if MPIEXEC is None:
    pytest.skip("needs mpiexec (an MPI library, e.g. pip install mpich)", allow_module_level=True)

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--n-documents", "200",
        "--max-iters", "12", "--eval-interval", "4", "--eval-iters", "3", "--log-interval", "1"]
GPT = ["pretrain-gpt", *TINY, "--batch-size", "4"]
BERT = ["pretrain-bert", *TINY, "--batch-size", "8", "--dropout", "0.1"]


def mpiexec(n, args, env=None, timeout=120, program=("-m", "numpretrain")):
    """`mpiexec -n n python -m numpretrain args...` (or python `program` args...); a list of (n, env)
    pairs runs ranks with their own env."""
    groups = n if isinstance(n, list) else [(n, env or {})]
    command = [MPIEXEC]
    for i, (count, extra) in enumerate(groups):
        command += ([":"] if i else []) + ["-n", str(count)]
        for name, value in extra.items():
            command += ["-env", name, value]
        command += [sys.executable, *program, *args]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment, check=False)


def state_tensors(run_dir):
    return load_safetensors(os.path.join(run_dir, "training_state.safetensors"))


def assert_same_training(expected_dir, actual_dir):
    """Weights byte for byte, every tensor of the training state (weights, AdamW moments), every
    logged loss, validation loss and learning rate."""
    with open(os.path.join(expected_dir, "model.safetensors"), "rb") as a, \
            open(os.path.join(actual_dir, "model.safetensors"), "rb") as b:
        assert a.read() == b.read(), "the weights files differ"
    expected, actual = state_tensors(expected_dir), state_tensors(actual_dir)
    assert expected.keys() == actual.keys()
    for name in expected:
        assert expected[name].tobytes() == actual[name].tobytes(), name
    assert metrics(expected_dir) == metrics(actual_dir)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One-process references with --grad-accum, run in this process: GPT 2, BERT 4."""
    base = tmp_path_factory.mktemp("data_parallel")
    for name, args in (("gpt_accum2", [*GPT, "--grad-accum", "2"]), ("bert_accum4", [*BERT, "--grad-accum", "4"])):
        assert cli.main([*args, "--out", str(base / name)]) == 0
    return base


def test_two_ranks_train_the_gpt_of_one_process_with_grad_accum_2(runs, tmp_path):
    result = mpiexec(2, [*GPT, "--out", str(tmp_path / "gpt")])
    assert result.returncode == 0, result.stderr
    assert_same_training(runs / "gpt_accum2", tmp_path / "gpt")
    assert result.stdout.count("step     1/12") == 1         # rank 0 alone speaks


def test_two_ranks_of_two_micro_batches_train_the_bert_of_grad_accum_4_dropout_included(runs, tmp_path):
    result = mpiexec(2, [*BERT, "--grad-accum", "2", "--out", str(tmp_path / "bert")])
    assert result.returncode == 0, result.stderr
    assert_same_training(runs / "bert_accum4", tmp_path / "bert")


def test_two_ranks_fine_tune_as_one_process_with_grad_accum_2(runs, tmp_path):
    finetune = ["finetune", "--ckpt", str(runs / "bert_accum4"), "--task", "reviews", "--labels", "16",
                "--batch-size", "8", "--max-iters", "6", "--log-interval", "2", "--dropout", "0.1"]
    assert cli.main([*finetune, "--grad-accum", "2", "--out", str(tmp_path / "one")]) == 0
    result = mpiexec(2, [*finetune, "--out", str(tmp_path / "two")])
    assert result.returncode == 0, result.stderr
    assert_same_training(tmp_path / "one", tmp_path / "two")


def test_a_killed_rank_ends_the_job_and_its_checkpoint_resumes_exactly_under_either_rank_count(runs, tmp_path):
    out = str(tmp_path / "gpt")
    started = time.monotonic()
    # rank 1 dies by SIGKILL as it starts step 6; the last checkpoint is step 4's
    result = mpiexec([(1, {}), (1, {"NUMPRETRAIN_FAULT": "kill-at-step:6"})], [*GPT, "--out", out])
    assert result.returncode != 0 and time.monotonic() - started < 60
    assert checkpoint_step(out) == 4
    assert load_safetensors(os.path.join(out, "model.safetensors"))            # the checkpoint loads
    assert load_safetensors_metadata(os.path.join(out, "model.safetensors"))["step"] == "4"
    again = str(tmp_path / "again")
    shutil.copytree(out, again)
    # resumed by two ranks, and by one process running the two micro-batches one after the other:
    # both end as the uninterrupted run
    result = mpiexec(2, ["pretrain-gpt", "--out", again, "--resume"])
    assert result.returncode == 0, result.stderr
    assert_same_training(runs / "gpt_accum2", again)
    assert cli.main(["pretrain-gpt", "--out", out, "--resume", "--grad-accum", "2"]) == 0
    assert_same_training(runs / "gpt_accum2", out)


def test_a_batch_that_does_not_split_over_the_ranks_is_reported_once(tmp_path):
    result = mpiexec(2, [*GPT[:-1], "5", "--out", str(tmp_path / "gpt")])
    assert result.returncode == 2
    said = "a step's batch of 5 (--batch-size) does not split over 2 ranks x --grad-accum 1"
    assert result.stderr.count(said) == 1, result.stderr
    assert not os.path.exists(tmp_path / "gpt")


def test_a_failure_of_one_rank_alone_stops_the_job_and_names_the_rank(tmp_path):
    # only rank 1's gradient turns NaN: it stops alone while rank 0 waits for it in the next step
    result = mpiexec([(1, {}), (1, {"NUMPRETRAIN_FAULT": "nan-grad:2"})], [*GPT, "--out", str(tmp_path / "gpt")])
    assert result.returncode == 3
    assert "rank 1 of 2 failed" in result.stderr and "step 2: the gradient of" in result.stderr


REACHED_ON_ONE_RANK = """
import json
import numpy as np
from numpretrain.autograd.tensor import Tensor
from numpretrain.training import data_parallel
a, b, c = (Tensor(np.array(values), requires_grad=True) for values in ([1.0, 2.0], [3.0], [4.0]))
split = data_parallel.micro_batches(1, [("a", a), ("b", b), ("c", c)])
loss = (a * a).sum() if split.rank == 0 else (a * b).sum()     # b: rank 1's micro-batch alone; c: none
loss.backward()
split.keep_gradients(split.mine.start)
split.sum_gradients()
grads = split.comm.gather([None if p.grad is None else p.grad.tolist() for p in (a, b, c)])
if split.rank == 0:
    print(json.dumps(grads))                     # one line: two ranks' prints could interleave
"""


def test_a_parameter_only_one_rank_reached_gets_its_gradient_on_every_rank():
    # one process running both micro-batches: a.grad = 2a + b = [5, 7], b.grad = sum(a) = [3], c.grad None
    result = mpiexec(2, [], program=("-c", REACHED_ON_ONE_RANK))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [[[5.0, 7.0], [3.0], None]] * 2
