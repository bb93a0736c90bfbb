"""The explorer's server over HTTP, without a browser: every answer equals what the library computes
(generate, probe's next-token distribution, fill-mask, nsp, classify, attention, backward), bad
requests get a JSON error with a 4xx status, and 30 clients at once get the same answers as one."""

import http.client
import json
import os
import random
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from numpretrain.app import cli, explore_views, probing
from numpretrain.app.explore import FIELDS, MAX_BODY_BYTES, ExplorerHandler, ExplorerServer
from numpretrain.app.explore_views import ExploredRun
from numpretrain.app.finetune import classify_texts
from numpretrain.autograd import functional as F
from numpretrain.autograd.capture import capture
from numpretrain.nn.self_attention import SelfAttention
from numpretrain.storage.runs import load_pretrained

TINY = ["--n-documents", "300", "--n-layer", "2", "--n-head", "2", "--n-embd", "16", "--block-size", "24",
        "--batch-size", "4", "--max-iters", "4", "--warmup-iters", "1", "--eval-interval", "2",
        "--eval-iters", "1", "--log-interval", "1"]
GPT_TEXT, BERT_TEXT = "今天天气很", "我昨天去了[MASK][MASK]大学参观"


def train(kind, tmp_path_factory):
    out = str(tmp_path_factory.mktemp(kind) / "run")
    assert cli.main([f"pretrain-{kind}", "--out", out, *TINY]) == 0
    return out


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory):
    return train("gpt", tmp_path_factory)


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory):
    return train("bert", tmp_path_factory)


class Served:
    """An ExplorerServer on a free port of 127.0.0.1, serving in a thread of this process."""

    def __init__(self, run_dir):
        self.server = ExplorerServer(ExploredRun(run_dir), port=0)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def request(self, method, path, body=None, headers=None, timeout=30):
        """(status, JSON answer) of one request; body: a dict (sent as JSON) or raw bytes."""
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                         headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw, status, kind = response.read(), response.status, response.headers["Content-Type"]
        except urllib.error.HTTPError as error:
            raw, status, kind = error.read(), error.code, error.headers["Content-Type"]
        return status, (json.loads(raw) if kind.startswith("application/json") else raw.decode())

    def post(self, path, body):
        status, answer = self.request("POST", path, body)
        assert status == 200, answer
        return answer

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def gpt(gpt_run):
    served = Served(gpt_run)
    yield served
    served.close()


@pytest.fixture(scope="module")
def bert(bert_run):
    served = Served(bert_run)
    yield served
    served.close()


# ----- answers equal the library's -----

def test_predictions_are_the_next_token_distribution(gpt, gpt_run):
    model, tokenizer, _ = load_pretrained(gpt_run)
    answer = gpt.post("/api/predict", {"text": GPT_TEXT, "top_k": 4})
    assert answer["tokens"] == list(GPT_TEXT)
    for t, top in enumerate(answer["positions"]):                 # position t: the token after text[:t + 1]
        expected = probing.next_token_distribution(model, tokenizer, GPT_TEXT[:t + 1], k=4)
        assert [d["token"] for d in top] == [token for token, _ in expected]
        np.testing.assert_allclose([d["p"] for d in top], [p for _, p in expected], rtol=1e-5)


@pytest.mark.parametrize("settings", [{}, {"temperature": 0.7, "top_k": 5, "seed": 3},
                                      {"top_p": 0.5, "seed": 1}, {"greedy": True}])
def test_generation_is_generate(gpt, gpt_run, settings):
    model, tokenizer, _ = load_pretrained(gpt_run)
    answer = gpt.post("/api/generate", {"text": GPT_TEXT, "max_new_tokens": 12, **settings})
    out = model.generate(np.asarray([tokenizer.encode(GPT_TEXT)]), 12, temperature=settings.get("temperature", 1.0),
                         top_k=settings.get("top_k"), top_p=settings.get("top_p"), seed=settings.get("seed", 0),
                         greedy=settings.get("greedy", False))
    assert answer["text"] == tokenizer.decode([int(t) for t in out[0]])


def test_fill_mask_and_nsp_are_the_commands(bert, bert_run):
    model, tokenizer, _ = load_pretrained(bert_run)
    answer = bert.post("/api/predict", {"text": BERT_TEXT, "top_k": 3})
    candidates, filled = probing.fill_mask(model, tokenizer, BERT_TEXT, 3)
    assert answer["filled"] == filled
    assert [m["position"] for m in answer["masks"]] == list(candidates)
    for m, top in zip(answer["masks"], candidates.values()):
        assert [d["token"] for d in m["top"]] == [token for token, _ in top]
        np.testing.assert_allclose([d["p"] for d in m["top"]], [p for _, p in top], rtol=1e-5)
    a, b = "今天天气很好。", "我去了公园。"
    assert bert.post("/api/nsp", {"a": a, "b": b})["p_is_next"] == pytest.approx(
        probing.nsp_probability(model, tokenizer, a, b), rel=1e-6)


def test_classifier_probabilities_are_classify(gpt_run, tmp_path):
    out = str(tmp_path / "clf")
    assert cli.main(["finetune", "--ckpt", gpt_run, "--task", "reviews", "--labels", "16", "--max-iters", "2",
                     "--out", out]) == 0
    served = Served(out)
    try:
        text = "这家餐厅的菜十分美味。"
        answer = served.post("/api/predict", {"text": text})
        (_, _, expected), = classify_texts(out, [text])
        assert {c["label"]: pytest.approx(c["p"], rel=1e-5) for c in answer["classes"]} == expected
        gradients = served.post("/api/gradients", {"text": text, "target": 1})
        assert gradients["target_token"] == list(expected)[1] and len(gradients["norm"]) == len(gradients["tokens"])
    finally:
        served.close()


def library_attention(run_dir, ids):
    """Each layer's probabilities (nh, T, T), kept by the attention modules themselves."""
    model, _, _ = load_pretrained(run_dir)
    modules = sorted((m for _, m in model.named_modules() if isinstance(m, SelfAttention)), key=lambda m: m.path)
    for module in modules:
        module.keep_probs = True
    model(np.asarray([ids]))
    return [m.last_probs[0] for m in modules]


@pytest.mark.parametrize("kind", ["gpt", "bert"])
def test_attention_rows_sum_to_one_over_allowed_keys(kind, gpt, bert, gpt_run, bert_run):
    served, run_dir, text = (gpt, gpt_run, GPT_TEXT) if kind == "gpt" else (bert, bert_run, BERT_TEXT)
    answer = served.post("/api/attention", {"text": text})
    probs, allowed = np.asarray(answer["layers"]), np.asarray(answer["allowed"], dtype=bool)   # (L, nh, T, T), (T, T)
    T = len(answer["tokens"])
    assert probs.shape == (2, 2, T, T)
    # GPT: a query sees itself and the keys before it; BERT: every key
    assert (allowed == (np.tri(T, dtype=bool) if kind == "gpt" else np.ones((T, T), bool))).all()
    np.testing.assert_allclose(np.where(allowed, probs, 0).sum(-1), 1, atol=1e-4)
    assert (probs[..., ~allowed] == 0).all()
    _, tokenizer, _ = load_pretrained(run_dir)
    ids = tokenizer.encode(text) if kind == "gpt" else probing.encode_masked(tokenizer, text)
    np.testing.assert_allclose(probs, np.stack(library_attention(run_dir, ids)), atol=1e-6)


def library_gradients(run_dir, text, position, target, bert=False):
    """d log p(target at position) / d the token embeddings (T, C) and every parameter, by our backward."""
    model, tokenizer, _ = load_pretrained(run_dir)
    ids = np.asarray([probing.encode_masked(tokenizer, text) if bert else tokenizer.encode(text)])
    name = "bert.embeddings.word_embeddings" if bert else "wte"
    with capture(name) as seen:
        logits = model(ids)["mlm_logits"] if bert else model(ids)[0]
        objective = F.log_softmax(logits, axis=-1)[0, position, target]
        objective.backward()
    return float(objective.data), seen[name], dict(model.named_parameters())


@pytest.mark.parametrize("kind", ["gpt", "bert"])
def test_gradients_are_our_backward(kind, gpt, bert, gpt_run, bert_run):
    served, run_dir, text = (gpt, gpt_run, GPT_TEXT) if kind == "gpt" else (bert, bert_run, BERT_TEXT)
    position, target = (2, 40) if kind == "gpt" else (6, 50)
    answer = served.post("/api/gradients", {"text": text, "position": position, "target": target})
    logprob, embedded, parameters = library_gradients(run_dir, text, position, target, bert=kind == "bert")
    assert answer["logprob"] == pytest.approx(logprob, rel=1e-5)
    grad = embedded.grad[0]                                                             # (T, C)
    np.testing.assert_allclose(answer["norm"], np.linalg.norm(grad, axis=-1), rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(answer["grad_x_input"], (grad * embedded.data[0]).sum(-1), rtol=1e-4, atol=1e-9)
    norms = {p["name"]: p["norm"] for p in answer["parameters"]}
    assert set(norms) == set(parameters)
    for name, p in parameters.items():
        if p.grad is None:
            assert norms[name] is None, name
        else:
            assert norms[name] == pytest.approx(float(np.linalg.norm(p.grad)), rel=1e-4, abs=1e-9), name


def test_attention_too_large_to_draw_is_refused(gpt, monkeypatch):
    monkeypatch.setattr(explore_views, "MAX_ATTENTION_CELLS", 2 * 2 * 4 * 4)      # 2 layers x 2 heads x 4 x 4
    assert gpt.request("POST", "/api/attention", {"text": GPT_TEXT[:4]})[0] == 200
    status, answer = gpt.request("POST", "/api/attention", {"text": GPT_TEXT})
    assert status == 400 and "try a shorter text" in answer["error"]


def test_a_target_typed_as_text_is_its_token(gpt, gpt_run):
    _, tokenizer, _ = load_pretrained(gpt_run)
    typed = gpt.post("/api/gradients", {"text": GPT_TEXT, "position": 3, "target_token": "好"})
    by_id = gpt.post("/api/gradients", {"text": GPT_TEXT, "position": 3, "target": tokenizer.encode("好")[0]})
    assert typed["target_token"] == "好" and typed == by_id


def test_the_graph_names_its_nodes_and_their_backward(gpt):
    graph = gpt.post("/api/gradients", {"text": GPT_TEXT})["graph"]
    nodes = {node["name"]: node for node in graph["nodes"] if node["name"]}
    assert {"h.0.attn.probs", "h.1.attn.probs", "logits", "wte.weight"} <= set(nodes)
    assert nodes["h.0.attn.probs"]["op"] == "softmax" and nodes["h.0.attn.probs"]["shape"] == [1, 2, 5, 5]
    assert nodes["h.0.attn.probs"]["grad_norm"] > 0
    for n, node in enumerate(graph["nodes"]):
        assert all(parent < n for parent in node["parents"])                 # parents first
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for key, where in graph["sources"].items():            # each place holds the backward the page shows
        with open(os.path.join(root, where["file"]), encoding="utf-8") as f:
            lines = f.read().splitlines()
        assert key == f"{where['file']}:{where['line']}"
        assert where["lines"][0].strip().startswith("def ") and lines[where["line"] - 1] == where["lines"][0]
        assert lines[where["line"] - 1:where["line"] - 1 + len(where["lines"])] == where["lines"]


def test_metrics_follow_the_file(gpt, gpt_run):
    path = os.path.join(gpt_run, "metrics.jsonl")
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    _, answer = gpt.request("GET", "/api/metrics")
    assert answer["records"] == records and answer["count"] == len(records)
    with open(path, "a", encoding="utf-8") as f:           # a run still training: a record, then half of one
        f.write(json.dumps({"step": 99, "loss": 1.5}) + "\n" + '{"step": 100, "lo')
    try:
        _, answer = gpt.request("GET", f"/api/metrics?since={len(records)}")
        assert answer["records"] == [{"step": 99, "loss": 1.5}] and not answer["restart"]
        _, answer = gpt.request("GET", "/api/metrics?since=500")             # the log was truncated (resume)
        assert answer["restart"] and answer["records"] == []
    finally:
        with open(path, "w", encoding="utf-8") as f:
            f.write("".join(json.dumps(r) + "\n" for r in records))


# ----- bad requests -----

@pytest.mark.parametrize("method, path, body, status, words", [
    ("POST", "/api/predict", b"{not json", 400, "not JSON"),
    ("POST", "/api/predict", b"\xff\xfe", 400, "not JSON"),
    ("POST", "/api/predict", [1, 2], 400, "JSON object"),
    ("POST", "/api/predict", {"text": GPT_TEXT, "path": "/etc/passwd"}, 400, "unknown field 'path'"),
    ("POST", "/api/predict", {}, 400, "'text' is missing"),
    ("POST", "/api/predict", {"text": ""}, 400, "empty"),
    ("POST", "/api/predict", {"text": 5}, 400, "'text' must be a string"),
    ("POST", "/api/predict", {"text": "今天" * 20}, 400, "longer than the model's context of 24"),
    ("POST", "/api/predict", {"text": GPT_TEXT, "top_k": "5"}, 400, "'top_k' must be an integer"),
    ("POST", "/api/predict", {"text": GPT_TEXT, "top_k": True}, 400, "'top_k' must be an integer"),
    ("POST", "/api/predict", {"text": GPT_TEXT, "top_k": 2.5}, 400, "'top_k' must be an integer"),
    ("POST", "/api/gradients", {"text": GPT_TEXT, "position": 10**400}, 400, "position"),
    ("POST", "/api/generate", {"text": GPT_TEXT, "seed": -1}, 400, "'seed' must be between 0 and"),
    ("POST", "/api/generate", {"text": GPT_TEXT, "top_p": 1e999}, 400, "'top_p' must be a finite number"),
    ("POST", "/api/generate", {"text": GPT_TEXT, "greedy": 1}, 400, "'greedy' must be true or false"),
    ("POST", "/api/predict", {"text": GPT_TEXT, "top_k": 0}, 400, "between 1 and 50"),
    ("POST", "/api/generate", {"text": GPT_TEXT, "temperature": -1}, 400, "'temperature'"),
    ("POST", "/api/generate", {"text": GPT_TEXT, "max_new_tokens": 10**9}, 400, "'max_new_tokens'"),
    ("POST", "/api/gradients", {"text": GPT_TEXT, "position": 5}, 400, "position 5 is not a position"),
    ("POST", "/api/gradients", {"text": GPT_TEXT, "target": 10**6}, 400, "not a token id"),
    ("POST", "/api/gradients", {"text": GPT_TEXT, "target_token": "好的"}, 400, "is 2 tokens"),
    ("POST", "/api/gradients", {"text": GPT_TEXT, "target_token": "Z"}, 400, "not in the model's vocabulary"),
    ("POST", "/api/nsp", {"a": "x", "b": "y"}, 400, "needs a BERT run"),
    ("POST", "/api/nope", {"text": "x"}, 404, "no such page or route"),
    ("GET", "/etc/passwd", None, 404, "no such page or route"),
    ("GET", "/api/metrics?since=-1", None, 400, "record number"),
    ("PUT", "/api/predict", b"{}", 405, "PUT is not answered"),
])
def test_a_bad_request_is_a_json_error(gpt, method, path, body, status, words):
    got, answer = gpt.request(method, path, body)
    assert got == status and words in answer["error"]


@pytest.mark.parametrize("kind", ["gpt", "bert"])
def test_random_fields_never_break_the_server(kind, gpt, bert):
    """Each route, with fields drawn from odd values: always an answer in JSON, never a 5xx."""
    served = gpt if kind == "gpt" else bert
    values = ["\ud800", "", " ", "\n", "a\x00b", "[MASK]", "[MASK]" * 30, "[CLS][SEP][PAD][UNK]", "今天[MASK]",
              "x" * 5000, 0, -1, 3, 1.5, 10**30, 1e308, None, True, [], {}]
    rng = random.Random(0)
    for _ in range(150):
        path = rng.choice(list(FIELDS))
        body = {name: rng.choice(values) for name in FIELDS[path] if rng.random() < 0.8}
        status, answer = served.request("POST", path, body)
        assert status < 500 and isinstance(answer, dict), (path, body, answer)


def raw_exchange(port, data):
    """Send raw bytes, return the status line and the JSON body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(data)
        response = http.client.HTTPResponse(connection)
        response.begin()
        return response.status, json.loads(response.read())


def test_hostile_requests_and_the_server_survives(gpt):
    huge = f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {100 * MAX_BODY_BYTES}\r\n\r\n"
    status, answer = raw_exchange(gpt.port, huge.encode() + b"x" * 1000)       # refused before it is read
    assert status == 413 and "at most" in answer["error"]
    status, answer = raw_exchange(gpt.port, b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert status == 411
    status, answer = raw_exchange(gpt.port, b"GARBAGE\r\n\r\n")
    assert status == 400 and answer["error"]
    status, answer = gpt.request("GET", "/api/info", headers={"Host": "attacker.example:80"})
    assert status == 403 and "127.0.0.1" in answer["error"]
    assert gpt.request("GET", "/api/info") == (200, ExploredRun.info(gpt.server.run))


def test_a_slow_client_holds_up_no_one(gpt, monkeypatch):
    monkeypatch.setattr(ExplorerHandler, "timeout", 0.5)            # seconds a request may take to arrive
    with socket.create_connection(("127.0.0.1", gpt.port), timeout=10) as slow:   # half a request, then silence
        slow.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{")
        assert gpt.request("GET", "/api/info", timeout=3)[0] == 200
        response = http.client.HTTPResponse(slow)
        response.begin()                                             # and then it is sent away
        assert response.status == 408 and "did not arrive" in json.loads(response.read())["error"]


def test_thirty_clients_at_once_get_the_answers_one_gets(gpt):
    texts = ["今天天气很", "医生拿起了", "雨下得很大", "我吃了一个苹果"]
    expected = {text: (gpt.post("/api/predict", {"text": text}), gpt.post("/api/attention", {"text": text}))
                for text in texts}
    answers, problems = [], []

    def client(n):
        try:
            for round in range(3):
                text = texts[(n + round) % len(texts)]
                answers.append((text, gpt.post("/api/predict", {"text": text}),
                                gpt.post("/api/attention", {"text": text})))
                assert gpt.request("POST", "/api/predict", b"{oops")[0] == 400
        except Exception as error:  # noqa: BLE001 (collected: an assertion in a thread would go unseen)
            problems.append(repr(error))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not problems and not any(thread.is_alive() for thread in threads)
    assert len(answers) == 90 and all((p, a) == expected[text] for text, p, a in answers)


# ----- the page, the file, the command -----

def test_the_page_loads_nothing_from_elsewhere(gpt):
    request = urllib.request.urlopen(f"http://127.0.0.1:{gpt.port}/", timeout=10)
    page = request.read().decode()
    assert "default-src 'none'" in request.headers["Content-Security-Policy"]
    assert "function renderAttention" in page and "<script src" not in page and "<link" not in page
    assert "http://" not in page.replace('"http://www.w3.org/2000/svg"', "") and "https://" not in page


def test_html_file_holds_the_views_of_one_text(gpt_run, tmp_path, capsys):
    path = tmp_path / "view.html"
    assert cli.main(["explore", "--ckpt", gpt_run, "--html", str(path), "--text", GPT_TEXT]) == 0
    assert "wrote" in capsys.readouterr().out
    page = path.read_text(encoding="utf-8")
    setup = page.split('<script type="application/json" id="explore-setup">')[1].split("</script>")[0]
    data = json.loads(setup)["data"]
    model, tokenizer, _ = load_pretrained(gpt_run)
    token, p = probing.next_token_distribution(model, tokenizer, GPT_TEXT, k=1)[0]
    top = data["predict"]["positions"][-1][0]
    assert top["token"] == token and top["p"] == pytest.approx(p)
    assert "https://" not in page


def test_a_text_cannot_close_the_script_it_is_embedded_in(gpt_run, tmp_path):
    path = tmp_path / "view.html"
    assert cli.main(["explore", "--ckpt", gpt_run, "--html", str(path), "--text", "</script><b>x"]) == 0
    assert "</script><b>" not in path.read_text(encoding="utf-8")


def test_the_command_prints_its_address_and_warns_about_another_host(gpt_run):
    for host, warned in (("127.0.0.1", False), ("127.0.0.2", True)):
        process = subprocess.Popen([sys.executable, "-m", "numpretrain", "explore", "--ckpt", gpt_run, "--host", host,
                                    "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(__file__))})
        try:
            line = process.stdout.readline()
            url = line.split(" at ")[1].split()[0]
            assert url.startswith(f"http://{host}:")
            with urllib.request.urlopen(url + "api/info", timeout=10) as response:
                assert json.loads(response.read())["kind"] == "gpt"
        finally:
            process.terminate()
            _, err = process.communicate(timeout=10)
        assert ("warning: --host" in err) == warned


@pytest.mark.parametrize("argv, words", [
    (["explore", "--ckpt", "no/such/run"], "no such folder"),
    (["explore", "--ckpt", "RUN", "--html", "x.html"], "--html needs --text"),
    (["explore", "--ckpt", "RUN", "--port", "70000"], "--port must be between"),
    (["explore", "--ckpt", "RUN", "--html", "RUN/model.safetensors", "--text", "x"], "is a file of the run"),
    (["explore", "--ckpt", "RUN", "--html", "RUN", "--text", "x"], "is a folder"),
])
def test_command_misuse(argv, words, gpt_run, capsys):
    weights = os.path.join(gpt_run, "model.safetensors")
    before = os.path.getsize(weights), os.path.getmtime(weights)
    assert cli.main([a.replace("RUN", gpt_run) for a in argv]) == 2
    assert words in capsys.readouterr().err
    assert (os.path.getsize(weights), os.path.getmtime(weights)) == before
