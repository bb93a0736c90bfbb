// The page's start: read the setup the server (or explore --html) wrote into the page, then run the
// views for the text, again whenever it changes.
"use strict";

const REVIEW = "这家餐厅的菜十分美味。";
const DEFAULT_TEXT = { gpt: "今天天气很", bert: "我昨天去了[MASK][MASK]大学参观",
                       gpt_classifier: REVIEW, bert_classifier: REVIEW };
const TYPING_PAUSE_MS = 400;   // run the views once typing pauses this long
let runNumber = 0;             // answers to an older text than the box's are dropped

function showRunInfo() {
  const i = X.info;
  document.getElementById("run-info").textContent =
    `${i.run}: ${i.kind}, ${i.n_layer} layers \u00d7 ${i.n_head} heads, width ${i.n_embd}, ` +
    `context ${i.context} tokens, ${i.parameters.toLocaleString("en")} parameters`;
}

function showWarnings(warnings) {
  replace(document.getElementById("warnings"), (warnings || []).map((w) => el("li", {}, w)));
}

async function runViews() {
  const text = document.getElementById("text").value;
  const number = ++runNumber;
  const current = () => number === runNumber;
  document.body.dataset.state = "computing";
  setStatus("computing\u2026");
  try {
    const topK = Number(document.getElementById("top-k").value) || 5;
    const predictions = await api("/api/predict", { text, top_k: topK });
    if (!current()) return;
    showWarnings(predictions.warnings);
    renderPredictions(predictions);
    try {                    // a text too long to draw every head of still gets its gradients
      const attention = await api("/api/attention", { text });
      if (!current()) return;
      renderAttention(attention);
    } catch (error) {
      if (!current()) return;
      replace(document.getElementById("attention"), el("p", { class: "error" }, error.message));
    }
    if (gradientPosition !== null && gradientPosition >= predictions.tokens.length) gradientPosition = null;
    const gradients = await api("/api/gradients", { text, position: gradientPosition, target: gradientTarget });
    if (!current()) return;
    renderGradients(gradients);
    renderGraph(gradients.graph);
    setStatus("");
    document.body.dataset.text = text;
    document.body.dataset.state = "ready";
  } catch (error) {
    if (!current()) return;
    setStatus(error.message, true);
    document.body.dataset.state = "error";
  }
}

function showStatic() {
  const data = X.data;
  document.getElementById("static-note").hidden = false;
  for (const id of ["text", "top-k", "run"]) document.getElementById(id).disabled = true;
  showWarnings(data.predict.warnings);
  renderPredictions(data.predict);
  renderAttention(data.attention);
  renderGradients(data.gradients);
  renderGraph(data.gradients.graph);
  document.body.dataset.text = document.getElementById("text").value;
  document.body.dataset.state = "ready";
}

function start() {
  const setup = JSON.parse(document.getElementById("explore-setup").textContent);
  X.info = setup.info;
  X.data = setup.data;
  showRunInfo();
  const box = document.getElementById("text");
  box.value = setup.text || DEFAULT_TEXT[X.info.kind] || "";
  box.maxLength = 4 * X.info.context;
  renderGenerationControls();
  renderNspControls();
  startCurves();
  if (X.data) return showStatic();
  let pause = null;
  const again = () => { gradientPosition = null; gradientTarget = null; runViews(); };
  box.addEventListener("input", () => { clearTimeout(pause); pause = setTimeout(again, TYPING_PAUSE_MS); });
  box.addEventListener("keydown", (e) => {            // Enter runs at once; Shift+Enter is a line break
    if (e.key !== "Enter" || e.shiftKey) return;
    e.preventDefault();
    clearTimeout(pause);
    again();
  });
  document.getElementById("run").addEventListener("click", again);
  document.getElementById("top-k").addEventListener("change", runViews);
  runViews();
}

start();
