// 1. Predictions: GPT's next tokens at each position and a sampled continuation; BERT's [MASK]s filled
// and next sentence prediction; a classifier's classes.
"use strict";

let selectedPosition = null;     // the GPT/BERT position whose top-k bars are shown

function topBars(top) {
  return barChart(top.map((d, rank) => ({
    label: shown(d.token), value: d.p, text: fixed(d.p),
    data: { token: d.token, p: d.p, rank, id: d.id },
  })), { max: 1, cls: "topk" });
}

function renderPredictions(answer) {
  X.predictions = answer;
  const box = document.getElementById("predictions");
  if (answer.classes) {
    replace(box, el("h3", {}, "Class probabilities"),
            barChart(answer.classes.map((c, rank) => ({ label: c.label, value: c.p, text: fixed(c.p),
                                                         data: { token: c.label, p: c.p, rank } })),
                     { max: 1, cls: "topk classes" }));
    return;
  }
  const T = answer.tokens.length;
  if (selectedPosition === null || selectedPosition >= T) selectedPosition = defaultPosition(answer);
  const gpt = answer.kind === "gpt";
  const read = answer.tokens.slice(0, selectedPosition + 1).join("");
  const caption = gpt
    ? `After \u300c${read}\u300d (position ${selectedPosition}) the model expects:`
    : `At position ${selectedPosition} (\u300c${answer.tokens[selectedPosition]}\u300d) the model reads:`;
  const parts = [];
  if (answer.masks) {
    parts.push(el("h3", {}, "Every [MASK] filled (as fill-mask fills them: the most confident first)"),
               el("p", { class: "filled", "data-filled": answer.filled }, "filled: ", el("b", {}, answer.filled)),
               el("div", { class: "columns" }, answer.masks.map((m, n) =>
                 el("div", { class: "mask", dataset: { position: m.position } },
                    el("h3", {}, `[MASK] #${n + 1} (position ${m.position})`), topBars(m.top)))));
  }
  const guess = gpt ? "next token" : "token at that position";
  parts.push(el("h3", {}, gpt ? "The next token at each position (click one)"
                              : "The model's guess at each position (click one)"),
             tokenStrip(answer.tokens, selectedPosition, (i) => { selectedPosition = i; renderPredictions(answer); },
                        (i) => shown(answer.positions[i][0].token)),
             el("p", { class: "note" }, `Under each token: its most likely ${guess}.`),
             el("h3", {}, caption), el("div", { id: "position-bars", dataset: { position: selectedPosition } },
                                      topBars(answer.positions[selectedPosition])));
  replace(box, parts);
}

function defaultPosition(answer) {
  if (answer.masks && answer.masks.length) return answer.masks[0].position;
  return answer.kind === "bert" ? answer.tokens.length - 2 : answer.tokens.length - 1;
}

function numberField(id, label, value, attrs) {
  return el("label", {}, label + " ", el("input", { id, type: "number", value, ...attrs }));
}

function renderGenerationControls() {
  const box = document.getElementById("generation");
  if (X.info.kind !== "gpt") return replace(box);
  replace(box, el("h3", {}, "A sampled continuation"),
    el("div", { class: "controls" },
       numberField("gen-tokens", "new tokens", 30, { min: 1, max: 200 }),
       numberField("gen-temperature", "temperature", 1, { min: 0, max: 10, step: 0.1 }),
       numberField("gen-top-k", "top-k", "", { min: 1, placeholder: "all" }),
       numberField("gen-top-p", "top-p", "", { min: 0.01, max: 1, step: 0.05, placeholder: "1" }),
       numberField("gen-seed", "seed", 0, { min: 0 }),
       el("label", {}, el("input", { id: "gen-greedy", type: "checkbox" }), " greedy"),
       el("button", { id: "generate", onclick: () => generate(), disabled: X.data ? true : null }, "Generate")),
    el("p", { id: "generated", class: "generated" }));
  if (X.data && X.data.generate) showGenerated(X.data.generate, document.getElementById("text").value);
}

function optionalNumber(id) {
  const value = document.getElementById(id).value;
  return value === "" ? null : Number(value);
}

async function generate() {
  const text = document.getElementById("text").value;
  const body = { text, max_new_tokens: optionalNumber("gen-tokens"), temperature: optionalNumber("gen-temperature"),
                 top_k: optionalNumber("gen-top-k"), top_p: optionalNumber("gen-top-p"),
                 seed: optionalNumber("gen-seed") ?? 0, greedy: document.getElementById("gen-greedy").checked };
  try {
    showGenerated(await api("/api/generate", body), text);
  } catch (error) {
    replace(document.getElementById("generated"), el("span", { class: "error" }, error.message));
  }
}

function showGenerated(answer, prompt) {
  const out = document.getElementById("generated");
  out.dataset.text = answer.text;
  const cut = answer.text.startsWith(prompt) ? prompt.length : 0;
  replace(out, el("b", {}, answer.text.slice(0, cut)), answer.text.slice(cut));
}

function renderNspControls() {
  const box = document.getElementById("nsp");
  if (X.info.kind !== "bert") return replace(box);
  replace(box, el("h3", {}, "Next sentence prediction: does B follow A?"),
    el("div", { class: "controls" },
       el("label", {}, "A ", el("input", { id: "nsp-a", size: 24, value: "今天天气很好。" })),
       el("label", {}, "B ", el("input", { id: "nsp-b", size: 24, value: "我们去公园散步吧。" })),
       el("button", { id: "nsp-run", onclick: () => runNsp(), disabled: X.data ? true : null }, "P(B follows A)")),
    el("div", { id: "nsp-result" }));
}

async function runNsp() {
  const result = document.getElementById("nsp-result");
  try {
    const [a, b] = ["nsp-a", "nsp-b"].map((id) => document.getElementById(id).value);
    const answer = await api("/api/nsp", { a, b });
    replace(result, barChart([{ label: "B follows A", value: answer.p_is_next, text: fixed(answer.p_is_next),
                                data: { p: answer.p_is_next } }], { max: 1 }));
  } catch (error) {
    replace(result, el("span", { class: "error" }, error.message));
  }
}
