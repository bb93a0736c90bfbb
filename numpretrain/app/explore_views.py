"""What the explorer page shows, computed by the library's own functions and returned as plain dicts.

    ExploredRun(run_dir)      the model, tokenizer and kind of one run, and the lock that serialises it
    predict(run, text)        GPT: the top-k next tokens at every position; BERT: every [MASK] filled as
                              `fill-mask` fills it, and the top-k at every position; classifier: its classes
    generate(run, text, ...)  a sampled continuation, as `generate` samples it (GPT)
    nsp(run, a, b)            P(B follows A), as `nsp` computes it (BERT)
    attention(run, text)      every layer's and head's probabilities (nh, T, T) and the allowed keys
    gradients(run, text, position, target)
                              d log p(target at position) / d each input token's embedding (its norm and
                              gradient x input), every parameter's gradient norm, and the graph (explore_graph.py)
    metrics(run, since)       the records of the run's metrics.jsonl from record `since` on

Every function takes a run's lock: the engine keeps global state (no_grad, capture) and the
modules keep their last attention probabilities, so one request at a time computes.
"""

import os
import threading

import numpy as np

from numpretrain.app import probing
from numpretrain.app.explore_graph import describe_graph, graph_nodes
from numpretrain.app.finetune import encode, trim
from numpretrain.autograd import functional as F
from numpretrain.autograd.attention import allowed_keys
from numpretrain.autograd.capture import capture
from numpretrain.autograd.softmax import stable_softmax
from numpretrain.autograd.tensor import no_grad
from numpretrain.nn.self_attention import SelfAttention
from numpretrain.storage.json_files import json_lines
from numpretrain.storage.runs import load_pretrained
from numpretrain.training.metrics_log import METRICS_FILE

DECIMALS = 6            # probabilities sent to the page: 6 decimals keep a row's sum within 1e-4 of 1
MAX_METRICS_RECORDS = 20000   # records one answer carries; the page asks again from where it stopped
MAX_ATTENTION_CELLS = 2_000_000   # layers x heads x T x T sent at once: about 16 MB of JSON, what a page still draws


class ExploredRun:
    """One run folder, loaded once: `kind` is its model_type (gpt, bert, gpt_classifier, bert_classifier)."""

    def __init__(self, run_dir):
        self.run_dir = run_dir
        self.model, self.tokenizer, self.config = load_pretrained(run_dir)
        self.kind = self.config.to_dict()["model_type"]
        body = self.config.body_config if self.kind.endswith("_classifier") else self.config
        self.body_config = body
        self.context = body.block_size if self.kind.startswith("gpt") else body.max_position
        self.lock = threading.Lock()

    @property
    def embedding_name(self):
        """The name of the token-embedding lookup's output, whose gradient the page shows per token."""
        return {"gpt": "wte", "gpt_classifier": "gpt.wte", "bert": "bert.embeddings.word_embeddings",
                "bert_classifier": "bert.embeddings.word_embeddings"}[self.kind]

    @property
    def class_names(self):
        """A classifier's labels in id order ("0", "1" ... when it saved none); [] for GPT and BERT."""
        if not self.kind.endswith("_classifier"):
            return []
        return list(self.config.labels) or [str(i) for i in range(self.config.n_labels)]

    def info(self):
        return {"kind": self.kind, "run": os.path.basename(os.path.normpath(self.run_dir)),
                "n_layer": self.body_config.n_layer, "n_head": self.body_config.n_head,
                "n_embd": self.body_config.n_embd, "context": self.context, "labels": self.class_names,
                "parameters": self.model.num_parameters()}

    # ----- text -> the model's input -----

    def inputs(self, text):
        """(ids (1, T), the batch the model is called with): as `generate`, `fill-mask` and `classify` encode."""
        if not text:
            raise ValueError("the text is empty: type something for the model to read")
        if self.kind.endswith("_classifier"):
            batch = trim(encode(self.model, self.tokenizer, [text], self.context + 1))   # one past: too long shows
            ids = batch["input_ids"]
        else:
            ids = self.tokenizer.encode(text)
            ids = np.asarray([[self.tokenizer.cls_id] + ids + [self.tokenizer.sep_id] if self.kind == "bert" else ids],
                             dtype=np.int64)
            batch = ids
        if ids.shape[1] > self.context:
            more = " or more" if self.kind.endswith("_classifier") else ""      # encode() stopped counting
            raise ValueError(f"the text is {ids.shape[1]} tokens{more}, longer than the model's context of "
                             f"{self.context} tokens")
        return ids, batch

    def tokens(self, ids):
        return [self.tokenizer.decode([int(i)]) for i in ids[0]]

    def forward(self, batch):
        """The model's output logits for its own objective: (1, T, V) for GPT and BERT, (1, n_labels) else."""
        if self.kind == "gpt":
            return self.model(batch)[0]
        if self.kind == "bert":
            return self.model(batch)["mlm_logits"]
        return self.model(batch)["logits"]


def _top(tokenizer, probs, k):
    """The k most likely tokens of a distribution (V,): [{"token", "id", "p"}]."""
    return [{"token": tokenizer.decode([int(i)]), "id": int(i), "p": float(probs[i])} for i in np.argsort(-probs)[:k]]


def _warnings(run, text, what="the text"):
    said = []
    probing.warn_unknown_characters(run.tokenizer, text, what, warn=said.append)
    return said


def predict(run, text, top_k=5):
    """The predictions view (see the module's docstring)."""
    with run.lock:
        ids, batch = run.inputs(text)
        answer = {"kind": run.kind, "tokens": run.tokens(ids), "ids": [int(i) for i in ids[0]],
                  "warnings": _warnings(run, text)}
        with no_grad():
            logits = run.forward(batch).data[0]                              # (T, V) or (n_labels,)
        if run.kind.endswith("_classifier"):
            probs, _ = stable_softmax(logits)                                # (n_labels,), as `classify`
            answer["classes"] = [{"label": name, "p": float(p)} for name, p in zip(run.class_names, probs)]
            return answer
        if run.kind == "bert":
            logits[:, :run.tokenizer.first_non_special_id] = -np.inf         # as fill-mask: never [PAD], [MASK] ...
            if probing.MASK_TOKEN in text:
                candidates, filled = probing.fill_mask(run.model, run.tokenizer, text, top_k, warn=lambda _: None)
                answer["masks"] = [{"position": position, "top": [{"token": t, "p": p} for t, p in top]}
                                   for position, top in candidates.items()]
                answer["filled"] = filled
        probs, _ = stable_softmax(logits)                                    # (T, V)
        answer["positions"] = [_top(run.tokenizer, row, top_k) for row in probs]
        return answer


def generate(run, text, max_new_tokens=30, temperature=1.0, top_k=None, top_p=None, seed=0, greedy=False):
    """A continuation of `text`, sampled as `python -m numpretrain generate` samples it."""
    if run.kind != "gpt":
        raise ValueError(f"generation needs a GPT run; this is a {run.kind} run")
    with run.lock:
        ids, _ = run.inputs(text)
        out = run.model.generate(ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                                 seed=seed, greedy=greedy)
        return {"text": run.tokenizer.decode([int(t) for t in out[0]]), "prompt_tokens": int(ids.shape[1])}


def nsp(run, a, b):
    """P(B follows A) by BERT's next-sentence head, as `python -m numpretrain nsp`."""
    if run.kind != "bert":
        raise ValueError(f"next sentence prediction needs a BERT run; this is a {run.kind} run")
    if not (a.strip() and b.strip()):
        raise ValueError("both sentences must hold some text")
    with run.lock:
        return {"p_is_next": probing.nsp_probability(run.model, run.tokenizer, a, b, warn=lambda _: None),
                "warnings": _warnings(run, a + b, "the sentences")}


def token_id(run, token):
    """The id of a token typed as text (a character, for a character-level model); one token or an error."""
    if run.class_names:
        if token not in run.class_names:
            raise ValueError(f"{token!r} is not a class of this classifier ({', '.join(run.class_names)})")
        return run.class_names.index(token)
    ids = run.tokenizer.encode(token)
    if len(ids) != 1:
        raise ValueError(f"{token!r} is {len(ids)} tokens to this model's tokenizer; type one token")
    if ids[0] == getattr(run.tokenizer, "unk_id", None) and token != "[UNK]":
        raise ValueError(f"{token!r} is not in the model's vocabulary (it reads as [UNK])")
    return ids[0]


def _attention_modules(run):
    return [module for _, module in run.model.named_modules() if isinstance(module, SelfAttention)]


def attention(run, text):
    """{"tokens", "layers": [(nh, T, T) as lists], "allowed": (T, T) 0/1}: query rows, key columns."""
    with run.lock:
        ids, batch = run.inputs(text)
        T, L, nh = ids.shape[1], run.body_config.n_layer, run.body_config.n_head
        if L * nh * T * T > MAX_ATTENTION_CELLS:
            raise ValueError(f"{T} tokens make {L * nh * T * T:,} attention weights over {L} layers x {nh} heads, "
                             f"more than the page draws ({MAX_ATTENTION_CELLS:,}); try a shorter text")
        modules = sorted(_attention_modules(run), key=lambda m: int(m.path.split(".")[-2]))   # h.0.attn, h.1.attn ...
        for module in modules:
            module.keep_probs = True
        try:
            with no_grad():
                run.forward(batch)
            layers = [np.round(m.last_probs[0].astype(np.float64), DECIMALS).tolist() for m in modules]
        finally:
            for module in modules:
                module.keep_probs, module.last_probs = False, None
        mask = batch.get("attention_mask") if isinstance(batch, dict) else None
        allowed = allowed_keys(T, T, modules[0].causal, mask)                # (1, 1, T, T) or None
        allowed = np.ones((T, T), bool) if allowed is None else np.broadcast_to(allowed[0, 0], (T, T))
        return {"tokens": run.tokens(ids), "layers": layers, "allowed": allowed.astype(int).tolist(),
                "names": [m.path for m in modules]}


def gradients(run, text, position=None, target=None, target_token=None):
    """The gradient view: d log p(target at position) / d (each input token's embedding, every parameter).

    GPT: p is the next token after position; BERT: the token at position (a [MASK], say);
    a classifier: the class `target` (position is not used). position defaults to the last
    token (BERT: the first [MASK], else the last token before [SEP]), target to the most likely;
    `target_token` names the target by its text instead of its id.
    """
    with run.lock:
        ids, batch = run.inputs(text)
        if target_token is not None:
            target = token_id(run, target_token)
        T = ids.shape[1]
        classifier = run.kind.endswith("_classifier")
        if position is None and run.kind == "bert":          # the first [MASK], else the last token before [SEP]
            masks = np.flatnonzero(ids[0] == run.tokenizer.mask_id)
            position = int(masks[0]) if len(masks) else T - 2
        elif position is None:
            position = T - 1
        if not 0 <= position < T:
            raise ValueError(f"position {position} is not a position of the text's {T} tokens (0 to {T - 1})")
        run.model.zero_grad()
        try:
            with capture("*.attn.probs"):                                    # the probabilities become nodes
                logits = run.forward(batch)                                  # (1, T, V) or (1, n_labels)
                logprobs = F.log_softmax(logits, axis=-1)
                row = logprobs[0] if classifier else logprobs[0, position]   # (V,) or (n_labels,)
                if target is None:
                    target = int(row.data.argmax())
                if not 0 <= target < row.shape[0]:
                    raise ValueError(f"target {target} is not a token id of the model (0 to {row.shape[0] - 1})")
                objective = row[target]
                nodes = graph_nodes(objective)                               # each keeps its gradient
                objective.backward()
            embedded = next(node for node in nodes if node.name == run.embedding_name)
            grad, x = embedded.grad[0], embedded.data[0]                     # (T, C) each
            parameters = [{"name": name, "shape": list(p.shape),
                           "norm": None if p.grad is None else float(np.linalg.norm(p.grad))}
                          for name, p in run.model.named_parameters()]
            target_label = run.class_names[target] if classifier else run.tokenizer.decode([target])
            return {"tokens": run.tokens(ids), "position": position, "target": target, "target_token": target_label,
                    "logprob": float(objective.data), "embedding": run.embedding_name,
                    "norm": np.linalg.norm(grad, axis=-1).astype(float).tolist(),       # (T,)
                    "grad_x_input": (grad * x).sum(axis=-1).astype(float).tolist(),    # (T,)
                    "parameters": parameters, "graph": describe_graph(nodes, run.model)}
        finally:
            run.model.zero_grad()


def metrics(run, since=0):
    """{"records": the metrics.jsonl records from number `since` on, "count": how many the file holds}.

    A line still being written (no newline yet) is left for the next call; a resumed run truncates
    the file, and then `restart` tells the page to start again from 0.
    """
    path = os.path.join(run.run_dir, METRICS_FILE)
    lines = []                        # one record per complete line: a damaged line counts, as {}
    if os.path.isfile(path):
        for _, raw, record, _ in json_lines(path, allow_nan=True):
            if raw.endswith(b"\n"):
                lines.append(record if isinstance(record, dict) else {})
    if since > len(lines):
        return {"records": [], "count": len(lines), "restart": True}
    records = lines[since:since + MAX_METRICS_RECORDS]
    return {"records": records, "count": len(lines), "restart": False}
