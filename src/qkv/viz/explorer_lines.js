// qkv explorer: the bertviz-like head view. Query tokens in a left column, key tokens in a right column, one
// line per (query, key, head) whose opacity is the weight, one colour per head; every head at once or one.
// Hovering a left token keeps only what it attends to, a right token only what attends to it; the keys a query
// may not attend to (mask 0) get a hatched box, distinct from a weight of zero (a faint or absent line).
(function () {
  "use strict";
  const QKV = window.QKV;
  const HEAD_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd"];

  function headColour(h) { return HEAD_COLOURS[h % HEAD_COLOURS.length]; }

  function drawLines(stage, kind, layer, head, mask) {
    const svgEl = QKV.svgEl, el = QKV.el;
    const qTok = kind.query_tokens, kTok = kind.key_tokens;
    const heads = head === "mean" ? layer.map((_, h) => h) : [Number(head)];
    const legend = el("div", { class: "qkv-legend", id: "qkv-lines-legend" });
    heads.forEach((h) => {
      const item = el("span", { class: "qkv-legend-item" }, "head " + (h + 1));
      item.style.borderLeft = "12px solid " + headColour(h);
      legend.appendChild(item);
    });
    stage.appendChild(legend);
    const rowH = 22, top = 20, colW = 150, gap = 260;
    const height = top + Math.max(qTok.length, kTok.length) * rowH + 10;
    const svg = svgEl("svg", { id: "qkv-lines", class: "qkv-lines", width: colW * 2 + gap, height: height });
    const defs = svgEl("defs");
    const pattern = svgEl("pattern", { id: "qkv-hatch", width: 6, height: 6, patternUnits: "userSpaceOnUse",
      patternTransform: "rotate(45)" });
    pattern.appendChild(svgEl("rect", { width: 6, height: 6, fill: "#e6e6e6" }));
    pattern.appendChild(svgEl("path", { d: "M0,0 L0,6", stroke: "#8a8a8a", "stroke-width": 2 }));
    defs.appendChild(pattern);
    svg.appendChild(defs);
    const yq = (i) => top + i * rowH + rowH / 2, yk = (j) => top + j * rowH + rowH / 2;
    const x1 = colW, x2 = colW + gap;
    const lines = svgEl("g", { class: "qkv-lines-g" });
    const all = [];
    heads.forEach((h) => {
      for (let i = 0; i < qTok.length; i++) for (let j = 0; j < kTok.length; j++) {
        const w = layer[h][i][j];
        if (w < 0.005) continue;
        const line = svgEl("line", { x1: x1, y1: yq(i), x2: x2, y2: yk(j), stroke: headColour(h),
          "stroke-width": (1 + 3 * w).toFixed(2), "stroke-opacity": (w / heads.length ** 0.5).toFixed(4),
          "data-query": i, "data-key": j, "data-head": h, "data-weight": w.toFixed(4) });
        all.push(line);
        lines.appendChild(line);
      }
    });
    svg.appendChild(lines);
    const boxes = { q: [], k: [] };
    function column(tokens, side) {
      tokens.forEach((tok, idx) => {
        const y = (side === "q" ? yq : yk)(idx);
        const g = svgEl("g", { class: "qkv-token qkv-token-" + side, "data-index": idx });
        const box = svgEl("rect", { x: side === "q" ? 4 : x2 + 4, y: y - rowH / 2 + 2, width: colW - 12, height: rowH - 4,
          fill: "transparent", rx: 3 });
        g.appendChild(box);
        g.appendChild(svgEl("text", { x: side === "q" ? x1 - 8 : x2 + 8, y: y + 4,
          "text-anchor": side === "q" ? "end" : "start" }, tok));
        g.onmouseenter = () => focus(side, idx);
        g.onmouseleave = () => focus(null, -1);
        boxes[side].push(box);
        svg.appendChild(g);
      });
    }
    column(qTok, "q");
    column(kTok, "k");

    // side "q": keep query idx's lines (what it attends to); side "k": key idx's (what attends to it)
    function focus(side, idx) {
      svg.dataset.focus = side ? side + idx : "";
      all.forEach((line) => {
        const mine = side === null || Number(line.dataset[side === "q" ? "query" : "key"]) === idx;
        line.style.display = mine ? "" : "none";
        line.setAttribute("stroke-opacity", mine && side ? line.dataset.weight : (line.dataset.weight / heads.length ** 0.5).toFixed(4));
      });
      boxes.q.concat(boxes.k).forEach((b) => { b.setAttribute("fill", "transparent"); b.removeAttribute("class"); });
      if (!side) return;
      boxes[side][idx].setAttribute("fill", "#fff2b3");
      if (!mask) return;
      const other = side === "q" ? "k" : "q";
      boxes[other].forEach((b, o) => {
        const allowed = side === "q" ? mask[idx][o] : mask[o][idx];
        if (!allowed) { b.setAttribute("fill", "url(#qkv-hatch)"); b.setAttribute("class", "qkv-masked"); }
      });
    }
    stage.appendChild(svg);
  }

  QKV.drawLines = drawLines;
  QKV.headColour = headColour;
})();
