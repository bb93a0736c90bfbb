"""Screenshots of the explorer page's views, for the README: python docs/img/make_screenshots.py

Serves a GPT and a BERT run with `numpretrain explore`'s server, opens the page in headless
Chromium (Debian's chromium and chromium-driver, and selenium: `pip install -e ".[browser]"`),
types a text into each and saves one PNG per view into docs/img/. The runs are --gpt and --bert
when given (e.g. runs/demo_gpt from demos/pretrain_gpt.py), otherwise small ones trained here
first (about a minute each on 2 cores). Chinese text needs a CJK font (fonts-wqy-zenhei).
"""

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from numpretrain.app import cli
from numpretrain.app.explore import ExplorerServer
from numpretrain.app.explore_views import ExploredRun

SMALL = ["--n-layer", "2", "--n-head", "4", "--n-embd", "64", "--block-size", "32", "--batch-size", "16",
         "--max-iters", "600", "--lr", "2e-3", "--eval-interval", "100", "--log-interval", "20"]
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--force-device-scale-factor=1")
WIDTH = 1200


def small_run(kind, folder):
    out = os.path.join(folder, kind)
    print(f"training a small {kind} into {out} ...", flush=True)
    assert cli.main([f"pretrain-{kind}", "--out", out, *SMALL]) == 0
    return out


def chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='explore-shots-')}")
    options.binary_location = shutil.which("chromium")
    return webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=options)


def open_page(driver, run_dir, text):
    server = ExplorerServer(ExploredRun(run_dir), port=0, text=text)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    driver.set_window_size(WIDTH, 1000)
    driver.get(server.url)
    for _ in range(600):
        if driver.execute_script("return document.body.dataset.state") == "ready":
            break
        time.sleep(0.05)
    return server


def shoot(driver, element_id, path):
    """One view as a PNG: the window made tall enough that the whole section is drawn."""
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(WIDTH, height + 200)
    time.sleep(0.3)
    driver.find_element("id", element_id).screenshot(path)
    print("wrote", os.path.relpath(path, ROOT))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpt", help="a GPT run (default: train a small one)")
    parser.add_argument("--bert", help="a BERT run (default: train a small one)")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "img"))
    args = parser.parse_args()
    from selenium.webdriver.common.action_chains import ActionChains
    scratch = tempfile.mkdtemp(prefix="explore-runs-")
    gpt_run = args.gpt or small_run("gpt", scratch)
    bert_run = args.bert or small_run("bert", scratch)
    driver = chromium()
    try:
        server = open_page(driver, gpt_run, "医生拿起了听诊器，给我检查")
        driver.find_element("id", "generate").click()
        time.sleep(1.0)
        shoot(driver, "view-predictions", os.path.join(args.out, "explore_predictions.png"))
        driver.find_elements("css selector", "canvas.head-cell")[5].click()       # layer 1, head 1 enlarged
        large = driver.find_element("id", "attention-large")
        ActionChains(driver).move_to_element_with_offset(large, 0, large.size["height"] // 2 - 12).perform()
        shoot(driver, "view-attention", os.path.join(args.out, "explore_attention.png"))
        shoot(driver, "view-gradients", os.path.join(args.out, "explore_gradients.png"))
        shoot(driver, "view-graph", os.path.join(args.out, "explore_graph.png"))
        server.shutdown()
        server = open_page(driver, bert_run, "我昨天去了[MASK][MASK]大学参观")
        driver.find_element("id", "nsp-run").click()
        time.sleep(1.0)
        shoot(driver, "view-predictions", os.path.join(args.out, "explore_bert.png"))
        shoot(driver, "view-curves", os.path.join(args.out, "explore_curves.png"))     # BERT's: MLM and NSP too
        server.shutdown()
    finally:
        driver.quit()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
