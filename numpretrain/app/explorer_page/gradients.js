// 3. Gradients: d log p(target at position) / d each input token's embedding, as bars (its norm, and
// gradient x input), and every parameter's gradient norm. Computed by numpretrain's own backward.
"use strict";

let gradientPosition = null, gradientTarget = null;   // null: the last position, the most likely token

// typed: a target token as text, when the top-k list lacks it
async function computeGradients(text, typed) {
  const body = { text, position: gradientPosition, target: typed ? null : gradientTarget, target_token: typed };
  const answer = await api("/api/gradients", body);
  [gradientPosition, gradientTarget] = [answer.position, answer.target];
  renderGradients(answer);
  renderGraph(answer.graph);
  return answer;
}

function targetChoices(answer) {
  if (X.info.kind.endsWith("_classifier")) {
    const fromPredictions = X.predictions ? X.predictions.classes.map((c) => c.label) : [];
    const labels = X.info.labels.length ? X.info.labels : fromPredictions;
    return labels.map((label, id) => ({ id, label }));
  }
  const top = X.predictions && X.predictions.positions ? X.predictions.positions[answer.position] || [] : [];
  const choices = top.map((d) => ({ id: d.id, label: `${shown(d.token)}  (p ${fixed(d.p)})` }));
  if (!choices.some((c) => c.id === answer.target)) {
    choices.unshift({ id: answer.target, label: shown(answer.target_token) });
  }
  return choices;
}

function renderGradients(answer) {
  const box = document.getElementById("gradients");
  const classifier = X.info.kind.endsWith("_classifier");
  const rerun = (typed) => computeGradients(document.getElementById("text").value, typed)
    .catch((e) => setStatus(e.message, true));
  const select = el("select", { id: "gradient-target", disabled: X.data ? true : null,
                                onchange: (e) => { gradientTarget = Number(e.target.value); rerun(); } },
                    targetChoices(answer).map((c) =>
                      el("option", { value: c.id, selected: c.id === answer.target }, c.label)));
  const typed = el("input", { id: "gradient-token", size: 6, placeholder: "a token", disabled: X.data ? true : null,
                              onchange: (e) => e.target.value && rerun(e.target.value) });
  const what = classifier
    ? `log p(class ${answer.target_token})`
    : X.info.kind === "gpt"
      ? `log p(next token = \u300c${shown(answer.target_token)}\u300d after position ${answer.position})`
      : `log p(\u300c${shown(answer.target_token)}\u300d at position ${answer.position})`;
  const positions = classifier ? null : tokenStrip(answer.tokens, answer.position, (i) => {
    if (X.data) return;
    gradientPosition = i; gradientTarget = null; rerun();
  });
  const rows = answer.tokens.map((t, i) => ({ t, i, norm: answer.norm[i], gxi: answer.grad_x_input[i] }));
  replace(box,
    el("div", { class: "controls" }, classifier ? null : el("span", {}, "Position (click a token):"),
       el("label", {}, "target ", select), el("label", {}, "or type one: ", typed)),
    positions,
    el("p", { id: "gradient-objective",
              dataset: { logprob: answer.logprob, position: answer.position, target: answer.target } },
       `The gradient of ${what} = ${fixed(answer.logprob)} with respect to each input token's embedding (`,
       el("code", {}, answer.embedding), ").", X.data ? " (A static page: position and target are fixed.)" : ""),
    el("div", { class: "columns" },
       el("div", {}, el("h3", {}, "|gradient| per token"),
          barChart(rows.map((r) => ({ label: shown(r.t), value: r.norm, text: short(r.norm),
                                      data: { position: r.i, norm: r.norm } })),
                   { cls: "grad-norm" })),
       el("div", {}, el("h3", {}, "gradient \u00b7 input per token"),
          barChart(rows.map((r) => ({ label: shown(r.t), value: r.gxi, text: short(r.gxi),
                                      data: { position: r.i, gxi: r.gxi } })),
                   { signed: true, cls: "grad-x-input" })),
       el("div", {}, el("h3", {}, "|gradient| of every parameter"), el("div", { class: "param-box" },
          barChart(answer.parameters.map((p) => ({ label: `${p.name} ${JSON.stringify(p.shape)}`, value: p.norm,
                                                   text: p.norm === null ? "no gradient" : short(p.norm),
                                                   data: { name: p.name, norm: p.norm ?? "" } })),
                   { smallLabels: true, cls: "param-norms" })))));
}
