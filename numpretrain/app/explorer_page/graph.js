// 4. The graph of that forward and backward: every node (parents first, as backward() sorts them) with
// its op, name, shape and gradient norm; a click shows where its backward is written, and its lines.
"use strict";

function renderGraph(graph) {
  const box = document.getElementById("graph");
  const source = el("pre", { id: "graph-source", class: "source" }, "Click a node to see its op's backward.");
  const biggest = Math.max(1e-12, ...graph.nodes.map((n) => n.grad_norm || 0));
  const rows = graph.nodes.map((node, i) => el("tr", { dataset: { node: i, op: node.op, name: node.name },
                                                       onclick: () => select(i) },
    el("td", {}, `#${i}`), el("td", {}, node.op), el("td", { class: "mono" }, node.name),
    el("td", { class: "mono" }, `(${node.shape.join(", ")})`),
    el("td", {}, el("span", { class: "gradbar", style: `width:${(60 * (node.grad_norm || 0)) / biggest}px` }),
       short(node.grad_norm)),
    el("td", {}, node.parents.map((p) => `#${p}`).join(" ")),
    el("td", {}, node.backward ? el("a", { href: "#graph-source" }, node.backward.split("/").pop()) : "leaf")));
  const body = el("tbody", {}, rows);
  const select = (i) => {
    const node = graph.nodes[i];
    rows.forEach((row, k) => { row.className = k === i ? "selected" : node.parents.includes(k) ? "parent" : ""; });
    const wrap = rows[i].closest(".graph-table-wrap");
    if (wrap) wrap.scrollTop = Math.max(0, rows[i].offsetTop - 60);     // the table scrolls, not the page
    if (!node.backward) {
      replace(source, `#${i} ${node.name || node.op}: a leaf (a parameter); its gradient is what the optimizer reads.`);
      return;
    }
    const where = graph.sources[node.backward];
    source.dataset.file = where.file;
    source.dataset.line = where.line;
    // the whole op when its source is known (forward, then the backward right beneath it), the backward marked
    const [first, lines] = where.op_lines.length ? [where.op_line, where.op_lines] : [where.line, where.lines];
    const backward = (n) => n >= where.line && n < where.line + where.lines.length;
    replace(source, el("div", { class: "source-title" }, `#${i} ${node.op} ${node.name}: its backward is `,
                       el("b", {}, `${where.file} line ${where.line}`)), "\n",
            lines.map((line, k) => el("div", { class: backward(first + k) ? "bw" : "" },
                                      el("span", { class: "ln" }, String(first + k)), line)));
  };
  const filter = el("input", { id: "graph-filter", placeholder: "filter: op or name, e.g. attn.probs", size: 32,
    oninput: (e) => {
      const words = e.target.value.toLowerCase();
      rows.forEach((row) => {
        row.hidden = words && !`${row.dataset.op} ${row.dataset.name}`.toLowerCase().includes(words);
      });
    } });
  replace(box, el("p", { class: "note" }, `${graph.nodes.length} nodes, parents before children; `,
                  "orange rows are the selected node's inputs; below it, its op's source with the backward marked."),
          el("div", { class: "controls" }, filter),
          el("div", { class: "graph-layout" },
             el("div", { class: "graph-table-wrap" },
                el("table", { class: "graph" },
                   el("thead", {}, el("tr", {}, ["#", "op", "name", "shape", "|grad|", "inputs", "backward"]
                     .map((h) => el("th", {}, h)))),
                   body)),
             source));
  const probs = graph.nodes.findIndex((n) => n.name.endsWith("attn.probs"));
  select(probs >= 0 ? probs : graph.nodes.length - 1);
}
