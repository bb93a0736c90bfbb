"""The explorer page in a real headless Chromium: what it draws equals what the library computes.

Needs Debian's chromium and chromium-driver and the `browser` extra (selenium), which .ci/run
installs; without them every test here skips, with a reason conftest.py recognises (so CI,
where everything is installed, fails instead of skipping). Selenium is pointed at the system's
chromedriver, so it never downloads a browser or a driver.
"""

import json
import os
import shutil
import tempfile
import threading

import numpy as np
import pytest

from numpretrain.app import cli, probing
from numpretrain.app.explore import ExplorerServer
from numpretrain.app.explore_views import ExploredRun
from numpretrain.autograd import functional as F
from numpretrain.autograd.capture import capture
from numpretrain.autograd.tensor import no_grad
from numpretrain.nn.self_attention import SelfAttention
from numpretrain.storage.runs import load_pretrained

N_LAYER, N_HEAD = 2, 4
TINY = ["--n-documents", "300", "--n-layer", str(N_LAYER), "--n-head", str(N_HEAD), "--n-embd", "16",
        "--block-size", "24", "--batch-size", "4", "--max-iters", "4", "--warmup-iters", "1", "--eval-interval", "2",
        "--eval-iters", "1", "--log-interval", "1"]
GPT_TEXT, BERT_TEXT = "今天天气很", "我昨天去了[MASK][MASK]大学参观"
# Chromium in a container with no network: no sandbox (no user namespaces), no GPU, nothing fetched in the background.
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1300,1000")
MASKED_PIXEL = [200, 200, 200, 255]     # charts.js: MASKED_COLOUR


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.skip("needs a browser: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="explore-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.binary_location = chromium
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def served(kind, tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp(kind) / "run")
    assert cli.main([f"pretrain-{kind}", "--out", run_dir, *TINY]) == 0
    server = ExplorerServer(ExploredRun(run_dir), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return run_dir, server


@pytest.fixture(scope="module")
def gpt(tmp_path_factory):
    run_dir, server = served("gpt", tmp_path_factory)
    yield run_dir, server.url
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    run_dir, server = served("bert", tmp_path_factory)
    yield run_dir, server.url
    server.shutdown()
    server.server_close()


def wait_until(driver, condition, timeout=20):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: condition(d))


def state(driver):
    return driver.execute_script("return [document.body.dataset.state, document.body.dataset.text]")


def open_and_type(driver, url, text):
    """Load the page, type `text` into its box and press Enter; wait until every view shows it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    driver.get(url)
    wait_until(driver, lambda d: state(d)[0] in ("ready", "error"))
    box = driver.find_element(By.ID, "text")
    box.clear()
    box.send_keys(text)
    box.send_keys(Keys.ENTER)
    wait_until(driver, lambda d: state(d) == ["ready", text])


def click(driver, element):
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def css(driver, selector):
    from selenium.webdriver.common.by import By
    return driver.find_elements(By.CSS_SELECTOR, selector)


def library_attention(model, ids):
    modules = sorted((m for _, m in model.named_modules() if isinstance(m, SelfAttention)), key=lambda m: m.path)
    for module in modules:
        module.keep_probs = True
    with no_grad():
        model(np.asarray([ids]))
    return [m.last_probs[0] for m in modules]                                  # each (nh, T, T)


def library_gradient(model, ids, position, logits_of, embedding):
    """The norm of d log p(most likely token at position) / d each token's embedding (T,), by our backward."""
    with capture(embedding) as seen:
        logprobs = F.log_softmax(logits_of(model(np.asarray([ids]))), axis=-1)[0, position]
        logprobs[int(logprobs.data.argmax())].backward()
    return np.linalg.norm(seen[embedding].grad[0], axis=-1)


def check_heatmaps(driver, expected, allowed):
    """The grid has n_layer x n_head cells; each draws its layer's head's probabilities, masked cells grey."""
    cells = css(driver, "canvas.head-cell")
    assert len(cells) == N_LAYER * N_HEAD
    T = allowed.shape[0]
    for cell in cells:
        layer, head = int(cell.get_attribute("data-layer")), int(cell.get_attribute("data-head"))
        probs = np.asarray(driver.execute_script("return arguments[0].probs", cell))
        np.testing.assert_allclose(probs, expected[layer][head], atol=1e-6)
        np.testing.assert_allclose(np.where(allowed, probs, 0).sum(-1), 1, atol=1e-4)
        corner = driver.execute_script(
            "const c = arguments[0];"
            "return Array.from(c.getContext('2d').getImageData(c.width - 1, 0, 1, 1).data)", cell)
        assert (corner == MASKED_PIXEL) == (not allowed[0, T - 1])          # the first query's last key


def test_gpt_page(browser, gpt):
    run_dir, url = gpt
    model, tokenizer, _ = load_pretrained(run_dir)
    open_and_type(browser, url, GPT_TEXT)

    # predictions: the top bar after the whole text is probe's next-token distribution
    token, p = probing.next_token_distribution(model, tokenizer, GPT_TEXT, k=5)[0]
    top = css(browser, "#position-bars .bar-label")[0]
    assert top.get_attribute("data-token") == token and float(top.get_attribute("data-p")) == pytest.approx(p, rel=1e-5)
    assert css(browser, "#position-bars .bar-value")[0].text == f"{p:.4f}"

    ids = tokenizer.encode(GPT_TEXT)
    check_heatmaps(browser, library_attention(model, ids), np.tri(len(ids), dtype=bool))

    # gradients: the most likely next token after the last position, by our own backward
    expected = library_gradient(model, ids, len(ids) - 1, lambda out: out[0], "wte")
    shown = [float(bar.get_attribute("data-norm")) for bar in css(browser, ".grad-norm .bar-track")]
    np.testing.assert_allclose(shown, expected, rtol=1e-4)
    assert len(css(browser, ".param-norms .bar-track")) == len(dict(model.named_parameters()))

    # the graph: a node's row shows where its backward is written
    click(browser, css(browser, 'table.graph tr[data-op="layer_norm"]')[0])
    source = css(browser, "#graph-source")[0]
    assert source.get_attribute("data-file") == "numpretrain/autograd/layer_norm.py" and "def backward" in source.text

    # a continuation sampled with the page's defaults (30 tokens, temperature 1, seed 0) is generate's
    click(browser, css(browser, "#generate")[0])
    wait_until(browser, lambda d: css(d, "#generated")[0].get_attribute("data-text"))
    out = model.generate(np.asarray([ids]), 30, seed=0)
    assert css(browser, "#generated")[0].get_attribute("data-text") == tokenizer.decode([int(t) for t in out[0]])


def test_curves_show_the_run_and_follow_it(browser, gpt):
    run_dir, url = gpt
    path = os.path.join(run_dir, "metrics.jsonl")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    steps = [r["step"] for r in map(json.loads, text.splitlines()) if "loss" in r]
    browser.get(url)
    # read in one script: a poll may redraw the chart between finding an element and reading it
    drawn = lambda d: d.execute_script(
        "const line = document.querySelector('#curves polyline[data-series=\"loss\"]');"
        "return line && [line.dataset.steps, document.querySelector('#curves .last-step').textContent]")
    wait_until(browser, drawn)
    assert drawn(browser) == [",".join(map(str, steps)), str(max(steps))]
    try:                                                    # the run goes on: the page follows within a poll or two
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": max(steps) + 1, "loss": 1.0}) + "\n")
        wait_until(browser, lambda d: drawn(d)[0].endswith(f",{max(steps) + 1}"), timeout=10)
    finally:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)


def test_bert_page(browser, bert):
    run_dir, url = bert
    model, tokenizer, _ = load_pretrained(run_dir)
    open_and_type(browser, url, BERT_TEXT)

    candidates, filled = probing.fill_mask(model, tokenizer, BERT_TEXT, 5)
    masks = css(browser, "#predictions .mask")
    assert [int(m.get_attribute("data-position")) for m in masks] == list(candidates)
    for mask, top in zip(masks, candidates.values()):
        bar = mask.find_element("css selector", ".bar-label")
        assert bar.get_attribute("data-token") == top[0][0]
        assert float(bar.get_attribute("data-p")) == pytest.approx(top[0][1], rel=1e-5)
    assert css(browser, "#predictions .filled")[0].get_attribute("data-filled") == filled

    ids = probing.encode_masked(tokenizer, BERT_TEXT)
    check_heatmaps(browser, library_attention(model, ids), np.ones((len(ids), len(ids)), bool))

    first_mask = next(iter(candidates))
    expected = library_gradient(model, ids, first_mask, lambda out: out["mlm_logits"],
                                "bert.embeddings.word_embeddings")
    shown = [float(bar.get_attribute("data-norm")) for bar in css(browser, ".grad-norm .bar-track")]
    np.testing.assert_allclose(shown, expected, rtol=1e-4)

    a, b = css(browser, "#nsp-a")[0].get_attribute("value"), css(browser, "#nsp-b")[0].get_attribute("value")
    click(browser, css(browser, "#nsp-run")[0])
    wait_until(browser, lambda d: css(d, "#nsp-result .bar-track"))
    assert float(css(browser, "#nsp-result .bar-track")[0].get_attribute("data-p")) == pytest.approx(
        probing.nsp_probability(model, tokenizer, a, b), rel=1e-5)


def test_static_file_opens_offline(browser, gpt, tmp_path):
    run_dir, _ = gpt
    path = tmp_path / "view.html"
    assert cli.main(["explore", "--ckpt", run_dir, "--html", str(path), "--text", GPT_TEXT]) == 0
    browser.get(path.as_uri())
    wait_until(browser, lambda d: state(d) == ["ready", GPT_TEXT])
    model, tokenizer, _ = load_pretrained(run_dir)
    token, p = probing.next_token_distribution(model, tokenizer, GPT_TEXT, k=1)[0]
    top = css(browser, "#position-bars .bar-label")[0]
    assert top.get_attribute("data-token") == token and float(top.get_attribute("data-p")) == pytest.approx(p, rel=1e-5)
    assert len(css(browser, "canvas.head-cell")) == N_LAYER * N_HEAD
    assert len(css(browser, ".grad-norm .bar-track")) == len(GPT_TEXT)
