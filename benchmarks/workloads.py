"""The benchmarks' workloads: the model sizes, one fixed batch, and a training step of each model in
numpretrain and in PyTorch, used by bench.py and op_profile.py. PyTorch comes as two peers:
"sdpa" (benchmarks/torch_sdpa_models.py, F.scaled_dot_product_attention and AdamW(foreach=True),
as a speed-minded user writes it) and "twin" (benchmarks/torch_models.py, attention spelled out,
AdamW's default loop over parameters).

Import numpretrain before this module (and before NumPy), as those scripts do: see
numpretrain/speed/threads.py.
"""

import numpy as np

SIZES = {  # n_layer, n_head, n_embd, context T, batch B
    "tiny": dict(n_layer=2, n_head=2, n_embd=64, T=32, B=8),
    # nanoGPT's CPU character recipe (charlm_parity.py): GPT without Linear biases, at vocabulary 256 here
    "recipe": dict(n_layer=4, n_head=4, n_embd=128, T=64, B=12, bias=False),
    "small": dict(n_layer=4, n_head=4, n_embd=128, T=64, B=16),
    "medium": dict(n_layer=6, n_head=8, n_embd=256, T=128, B=16),
}
VOCAB = 256
MLM_PROB = 0.15            # BERT labels this fraction of the real (unpadded) positions
LR, WEIGHT_DECAY = 1e-3, 0.01


def make_batch(model, size, seed=0):
    """A fixed random batch as NumPy arrays. BERT: segments A|B, 0-25% padding at the end,
    MLM labels on 15% of the real positions, random NSP labels."""
    s, rng = SIZES[size], np.random.default_rng(seed)
    B, T = s["B"], s["T"]
    ids = rng.integers(0, VOCAB, (B, T))
    if model == "gpt":
        return dict(ids=ids, targets=rng.integers(0, VOCAB, (B, T)))
    lengths = rng.integers(T - T // 4, T + 1, B)
    mask = np.arange(T)[None, :] < lengths[:, None]                        # (B, T) True at real tokens
    token_type_ids = (np.arange(T)[None, :] >= lengths[:, None] // 2).astype(np.int64) * mask
    labelled = mask & (rng.random((B, T)) < MLM_PROB)
    labelled[:, 1] = True                                                  # at least one per row
    mlm_labels = np.where(labelled, rng.integers(0, VOCAB, (B, T)), -100)
    return dict(ids=ids, token_type_ids=token_type_ids, attention_mask=mask, mlm_labels=mlm_labels,
                nsp_labels=rng.integers(0, 2, B))


PEERS = ("sdpa", "twin")


def build_numpretrain(model, size, context=None, bias=True):
    """bias=False drops the Linear layers' biases (GPT only: BERT always has them; so does the recipe)."""
    from numpretrain.models.bert import BertConfig, BertForPreTraining
    from numpretrain.models.gpt import GPT, GPTConfig
    from numpretrain.training.optimizers import AdamW
    s = SIZES[size]
    bias = bias and s.get("bias", True)
    if model == "gpt":
        net = GPT(GPTConfig(vocab_size=VOCAB, block_size=context or s["T"], n_layer=s["n_layer"],
                            n_head=s["n_head"], n_embd=s["n_embd"], dropout=0.0, bias=bias))
    else:
        net = BertForPreTraining(BertConfig(vocab_size=VOCAB, max_position=s["T"], n_layer=s["n_layer"],
                                            n_head=s["n_head"], n_embd=s["n_embd"],
                                            intermediate_size=4 * s["n_embd"], dropout=0.0))
    opt = AdamW(list(net.parameters()), lr=LR, weight_decay=WEIGHT_DECAY)
    return net, opt


def numpretrain_loss(model, net, batch):
    """The forward pass: the training loss as a Tensor."""
    if model == "gpt":
        return net(batch["ids"], batch["targets"])[1]
    return net(batch["ids"], batch["token_type_ids"], batch["attention_mask"],
               batch["mlm_labels"], batch["nsp_labels"])["loss"]


def numpretrain_step(model, net, opt, batch):
    opt.zero_grad()
    loss = numpretrain_loss(model, net, batch)
    loss.backward()
    opt.step()
    return float(loss.data)


def build_torch(model, size, context=None, peer="sdpa", bias=True):
    """peer "sdpa" (the main PyTorch column) or "twin"; the model and its AdamW."""
    import torch
    import torch_models
    import torch_sdpa_models
    module = torch_sdpa_models if peer == "sdpa" else torch_models
    s = SIZES[size]
    bias = bias and s.get("bias", True)
    if model == "gpt":
        net = module.GPT(VOCAB, context or s["T"], s["n_layer"], s["n_head"], s["n_embd"], bias=bias)
    else:
        net = module.BertForPreTraining(VOCAB, s["T"], s["n_layer"], s["n_head"], s["n_embd"],
                                        4 * s["n_embd"])
    foreach = True if peer == "sdpa" else None                 # None: PyTorch's default, a loop on CPU
    return net, torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=WEIGHT_DECAY, foreach=foreach)


def torch_batch(model, batch):
    import torch
    if model == "gpt":
        return dict(ids=torch.from_numpy(batch["ids"]), targets=torch.from_numpy(batch["targets"]))
    rows, cols = np.nonzero(batch["mlm_labels"] != -100)
    return dict(ids=torch.from_numpy(batch["ids"]), token_type_ids=torch.from_numpy(batch["token_type_ids"]),
                attention_mask=torch.from_numpy(batch["attention_mask"]), mlm_rows=torch.from_numpy(rows),
                mlm_cols=torch.from_numpy(cols), mlm_targets=torch.from_numpy(batch["mlm_labels"][rows, cols]),
                nsp_labels=torch.from_numpy(batch["nsp_labels"]))


def torch_step(model, net, opt, batch):
    opt.zero_grad(set_to_none=True)
    loss = net(**batch)
    loss.backward()
    opt.step()
    return loss.item()
