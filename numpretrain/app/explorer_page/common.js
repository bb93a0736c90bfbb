// What every view uses: making elements (text always as text, never as HTML), asking the server, numbers.
"use strict";

const X = {              // the page's state, shared by the views
  info: null,            // the run: kind, n_layer, n_head, context, labels (GET /api/info)
  data: null,            // a static page's precomputed views (explore --html), else null
  predictions: null,     // the last POST /api/predict answer
};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttributes(node, attrs);
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  setAttributes(node, attrs);
  for (const child of children.flat(Infinity)) node.append(child instanceof Node ? child : String(child));
  return node;
}

function setAttributes(node, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "style") node.style.cssText = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
}

function replace(container, ...children) {
  container.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined));
}

// POST a JSON body (or GET without one); a 4xx/5xx answer's {"error"} becomes the thrown message.
async function api(path, body) {
  const options = body === undefined ? {} :
    { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const response = await fetch(path, options);
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  return answer;
}

// A token as it reads on screen: spaces and line breaks made visible.
function shown(token) {
  return token.replace(/\n/g, "\u21b5").replace(/ /g, "\u2423").replace(/\t/g, "\u21e5") || "\u2205";
}

function fixed(x, digits = 4) {
  return x === null || x === undefined ? "-" : Number(x).toFixed(digits);
}

function short(x) {
  if (x === null || x === undefined) return "-";
  const a = Math.abs(x);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? x.toExponential(2) : x.toPrecision(4);
}

// A row of clickable token chips; `sub(i)` is the small line under each, `onpick(i)` its click.
function tokenStrip(tokens, selected, onpick, sub) {
  return el("div", { class: "tokens" }, tokens.map((token, i) =>
    el("span", { class: "token" + (i === selected ? " selected" : ""), title: `position ${i}`,
                 dataset: { position: i }, onclick: () => onpick(i) },
       el("span", { class: "t" }, shown(token)), sub ? el("span", { class: "sub" }, sub(i)) : null)));
}

function setStatus(message, isError) {
  const status = document.getElementById("status");
  status.textContent = message;
  status.className = isError ? "error" : "";
}
