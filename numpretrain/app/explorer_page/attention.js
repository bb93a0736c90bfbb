// 2. Attention: every layer x head as a small heatmap (query rows, key columns); click one to enlarge,
// hover a row (or a token) to see what that token attends to.
"use strict";

let chosenHead = [0, 0];          // [layer, head] shown large

function renderAttention(answer) {
  const box = document.getElementById("attention");
  const T = answer.tokens.length;
  const cell = Math.max(1, Math.floor(96 / T));
  const grid = el("table", { class: "head-grid" },
    el("tr", {}, el("th", {}), answer.layers[0].map((_, h) => el("th", {}, `head ${h}`))),
    answer.layers.map((heads, l) => el("tr", {}, el("th", {}, `layer ${l}`), heads.map((probs, h) => {
      const chosen = l === chosenHead[0] && h === chosenHead[1];
      const canvas = el("canvas", { class: "head-cell" + (chosen ? " selected" : ""),
                                    width: T * cell, height: T * cell, title: `${answer.names[l]} head ${h}`,
                                    dataset: { layer: l, head: h } });
      canvas.probs = probs;                            // what it draws, for anyone inspecting the page
      drawHeatmap(canvas.getContext("2d"), probs, answer.allowed, cell);
      canvas.addEventListener("click", () => { chosenHead = [l, h]; renderAttention(answer); });
      return el("td", {}, canvas);
    }))));
  if (chosenHead[0] >= answer.layers.length || chosenHead[1] >= answer.layers[0].length) chosenHead = [0, 0];
  replace(box, el("div", { class: "legend" },
                  el("span", {}, el("span", { class: "swatch", style: "background:#fff" }), "0"),
                  el("span", {}, el("span", { class: "swatch", style: "background:rgb(37,99,235)" }), "1"),
                  el("span", {}, el("span", { class: "swatch", style: `background:rgb(${MASKED_COLOUR})` }),
                     "masked (may not attend)"),
                  el("span", {}, "rows: queries, columns: keys; each row sums to 1 over the keys it may see")),
          el("div", { class: "attention-layout" }, grid, enlarged(answer)));
}

function enlarged(answer) {
  const [l, h] = chosenHead;
  const probs = answer.layers[l][h], T = answer.tokens.length;
  const cell = Math.max(8, Math.min(28, Math.floor(520 / T)));
  const label = Math.min(64, 14 + 8 * Math.max(...answer.tokens.map((t) => shown(t).length)));
  const canvas = el("canvas", { id: "attention-large", width: label + T * cell + 4, height: label + T * cell + 4 });
  canvas.probs = probs;
  const strip = el("div", { id: "attends-to" });
  const context = canvas.getContext("2d");
  const draw = (row) => {
    context.clearRect(0, 0, canvas.width, canvas.height);
    drawHeatmap(context, probs, answer.allowed, cell, label, label);
    context.fillStyle = "#1d2330";
    context.font = `${Math.min(14, cell)}px sans-serif`;
    context.textAlign = "center";
    answer.tokens.forEach((t, j) => {                                  // keys across the top
      context.save();
      context.translate(label + j * cell + cell / 2, label - 4);
      context.rotate(-Math.PI / 2);
      context.textAlign = "left";
      context.fillText(shown(t), 0, cell / 4);
      context.restore();
    });
    context.textAlign = "right";
    answer.tokens.forEach((t, i) => context.fillText(shown(t), label - 4, label + (i + 0.75) * cell));   // queries
    if (row !== null) {
      context.strokeStyle = "#d9480f";
      context.lineWidth = 2;
      context.strokeRect(label, label + row * cell, T * cell, cell);
    }
  };
  const show = (row) => {
    draw(row);
    if (row === null) {
      return replace(strip, el("p", { class: "note" }, "Hover a row or a token to see what it attends to."));
    }
    replace(strip, el("p", {}, `\u300c${shown(answer.tokens[row])}\u300d (position ${row}) attends to:`),
            el("div", { class: "tokens" }, answer.tokens.map((t, j) => {
              const p = probs[row][j];
              const [r, g, b] = answer.allowed[row][j] ? heatColour(p) : MASKED_COLOUR;
              return el("span", { class: "token", title: fixed(p), dataset: { p },
                                  style: `background:rgb(${r},${g},${b});color:${p > 0.45 ? "#fff" : "#000"}` },
                        el("span", { class: "t" }, shown(t)), el("span", { class: "sub" }, fixed(p, 2)));
            })));
  };
  canvas.addEventListener("mousemove", (event) => {
    const rect = canvas.getBoundingClientRect();
    const row = Math.floor((event.clientY - rect.top - label) / cell);
    show(row >= 0 && row < T ? row : null);
  });
  const queries = tokenStrip(answer.tokens, null, () => {}, null);
  queries.querySelectorAll(".token").forEach((chip, i) => chip.addEventListener("mouseenter", () => show(i)));
  show(null);
  return el("div", {}, el("h3", {}, `${answer.names[l]}, head ${h}`), canvas,
            el("p", { class: "note" }, "Hover a token:"), queries, strip);
}
