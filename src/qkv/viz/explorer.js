// qkv attention explorer: flip through kinds, layers and heads of attention maps; hover a cell for the token
// pair and its weight. No dependencies. Used by the HTML export (qkv attention) and the web app (qkv serve).
//
// Data: {title, subtitle, kinds: [{name, title, query_tokens[Tq], key_tokens[Tk], weights[L][H][Tq][Tk]}]}
// Views: "head" (one head, or the mean of a layer's heads, large), "model" (every layer × head as thumbnails,
// click one to open it), "alignment" (cross-attention averaged over the heads of a layer, as a matrix and as
// lines between the sentences whose opacity is the weight).
(function () {
  "use strict";

  const VIRIDIS = [
    [68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142],
    [31, 158, 137], [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37],
  ];

  function colour(v) {
    v = Math.max(0, Math.min(1, v));
    const x = v * (VIRIDIS.length - 1);
    const i = Math.min(Math.floor(x), VIRIDIS.length - 2);
    const f = x - i;
    const a = VIRIDIS[i], b = VIRIDIS[i + 1];
    const c = [0, 1, 2].map((j) => Math.round(a[j] + f * (b[j] - a[j])));
    return "rgb(" + c.join(",") + ")";
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svgEl(tag, attrs, text) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // mean over heads of one layer: H × Tq × Tk -> Tq × Tk
  function meanHeads(layer) {
    const h = layer.length;
    return layer[0].map((row, q) => row.map((_, k) => layer.reduce((s, head) => s + head[q][k], 0) / h));
  }

  function matrixMax(m) {
    let best = 0;
    for (const row of m) for (const v of row) best = Math.max(best, v);
    return best || 1e-6;
  }

  // Draw a (Tq × Tk) matrix on a canvas with token labels; hovering a cell fills the tooltip.
  function drawHeatmap(canvas, matrix, qTok, kTok, tooltip) {
    const tq = matrix.length, tk = matrix[0].length;
    const cell = Math.max(3, Math.min(34, Math.floor(620 / Math.max(tq, tk))));
    const ctx = canvas.getContext("2d");
    const font = Math.min(13, Math.max(8, cell - 4)) + "px sans-serif";
    ctx.font = font;
    const every = Math.max(1, Math.ceil(11 / cell));  // label every n-th token when cells are tiny
    const labelWidth = (toks) => Math.max(10, ...toks.map((t) => ctx.measureText(t).width)) + 8;
    const left = labelWidth(qTok), top = labelWidth(kTok), legend = 70;
    const dpr = window.devicePixelRatio || 1;
    const w = left + tk * cell + legend, h = Math.max(top + tq * cell + 10, top + 160);
    canvas.width = w * dpr; canvas.height = h * dpr;
    canvas.style.width = w + "px"; canvas.style.height = h + "px";
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.font = font;
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, w, h);
    const vmax = matrixMax(matrix);
    for (let q = 0; q < tq; q++) {
      for (let k = 0; k < tk; k++) {
        ctx.fillStyle = colour(matrix[q][k] / vmax);
        ctx.fillRect(left + k * cell, top + q * cell, cell, cell);
      }
    }
    ctx.fillStyle = "#222"; ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    for (let q = 0; q < tq; q += every) ctx.fillText(qTok[q], left - 4, top + q * cell + cell / 2);
    ctx.textAlign = "left";
    for (let k = 0; k < tk; k += every) {
      ctx.save();
      ctx.translate(left + k * cell + cell / 2, top - 4);
      ctx.rotate(-Math.PI / 2);
      ctx.fillText(kTok[k], 0, 0);
      ctx.restore();
    }
    // colour bar: 0 … vmax
    const bx = left + tk * cell + 16, bh = 140;
    for (let i = 0; i < bh; i++) {
      ctx.fillStyle = colour(1 - i / bh);
      ctx.fillRect(bx, top + i, 14, 1);
    }
    ctx.fillStyle = "#222"; ctx.textAlign = "left"; ctx.font = "10px sans-serif";
    ctx.fillText(vmax.toFixed(3), bx + 18, top + 4);
    ctx.fillText("0", bx + 18, top + bh - 2);

    canvas.onmousemove = (ev) => {
      const r = canvas.getBoundingClientRect();
      const k = Math.floor((ev.clientX - r.left - left) / cell), q = Math.floor((ev.clientY - r.top - top) / cell);
      if (q < 0 || k < 0 || q >= tq || k >= tk) { tooltip.style.display = "none"; return; }
      tooltip.textContent = qTok[q] + " → " + kTok[k] + ": " + matrix[q][k].toFixed(4);
      tooltip.dataset.query = q; tooltip.dataset.key = k; tooltip.dataset.weight = matrix[q][k];
      tooltip.style.display = "block";
      tooltip.style.left = ev.pageX + 12 + "px"; tooltip.style.top = ev.pageY + 12 + "px";
    };
    canvas.onmouseleave = () => { tooltip.style.display = "none"; };
    canvas.dataset.cell = cell; canvas.dataset.left = left; canvas.dataset.top = top;
  }

  function drawThumb(canvas, matrix) {
    const tq = matrix.length, tk = matrix[0].length;
    const cell = Math.max(1, Math.min(24, Math.floor(96 / Math.max(tq, tk))));
    canvas.width = tk * cell; canvas.height = tq * cell;
    const ctx = canvas.getContext("2d"), vmax = matrixMax(matrix);
    for (let q = 0; q < tq; q++) for (let k = 0; k < tk; k++) {
      ctx.fillStyle = colour(matrix[q][k] / vmax);
      ctx.fillRect(k * cell, q * cell, cell, cell);
    }
  }

  // Target tokens at the bottom, source tokens at the top, one line per pair with opacity = weight.
  function drawAlignment(svg, matrix, srcTok, tgtTok) {
    const t = tgtTok.length, s = srcTok.length, gap = 64, width = Math.max(s, t) * gap + 40;
    svg.setAttribute("width", width); svg.setAttribute("height", 260);
    const xs = (n, i) => 20 + (n > 1 ? (i * (width - 40 - gap)) / (n - 1) : (width - 40 - gap) / 2) + gap / 2;
    for (let q = 0; q < t; q++) for (let k = 0; k < s; k++) {
      const w = matrix[q][k];
      if (w < 0.01) continue;
      svg.appendChild(svgEl("line", {
        x1: xs(t, q), y1: 200, x2: xs(s, k), y2: 60, stroke: "#1f77b4",
        "stroke-opacity": w.toFixed(4), "stroke-width": (1 + 4 * w).toFixed(2), "data-weight": w.toFixed(4),
      }));
    }
    srcTok.forEach((tok, k) => svg.appendChild(svgEl("text", { x: xs(s, k), y: 44, class: "qkv-src" }, tok)));
    tgtTok.forEach((tok, q) => svg.appendChild(svgEl("text", { x: xs(t, q), y: 224, class: "qkv-tgt" }, tok)));
  }

  function render(root, data) {
    root.textContent = "";
    const kinds = data.kinds || [];
    if (!kinds.length) { root.appendChild(el("p", {}, "No attention maps.")); return; }
    const state = { kind: 0, layer: 0, head: "mean", view: "head" };
    const tooltip = document.getElementById("qkv-tooltip") ||
      document.body.appendChild(el("div", { id: "qkv-tooltip", class: "qkv-tooltip" }));
    if (data.title) root.appendChild(el("h2", {}, data.title));
    if (data.subtitle) root.appendChild(el("p", { class: "qkv-subtitle" }, data.subtitle));
    const controls = el("div", { class: "qkv-controls" });
    const kindSel = el("select", { id: "qkv-kind", "aria-label": "attention kind" });
    kinds.forEach((k, i) => kindSel.appendChild(el("option", { value: i }, k.title)));
    const layerSel = el("select", { id: "qkv-layer", "aria-label": "layer" });
    const headSel = el("select", { id: "qkv-head", "aria-label": "head" });
    const views = el("span", { class: "qkv-views" });
    const hasCross = kinds.some((k) => k.name === "cross");
    const viewNames = [["head", "Head view"], ["model", "All layers × heads"]];
    if (hasCross) viewNames.push(["alignment", "Alignment"]);
    const viewButtons = viewNames.map(([v, label]) => {
      const b = el("button", { type: "button", id: "qkv-view-" + v, "data-view": v }, label);
      b.onclick = () => { state.view = v; update(); };
      views.appendChild(b);
      return b;
    });
    for (const [label, node] of [["Attention", kindSel], ["Layer", layerSel], ["Head", headSel]]) {
      const lab = el("label", {}, label + " ");
      lab.appendChild(node);
      controls.appendChild(lab);
    }
    controls.appendChild(views);
    root.appendChild(controls);
    const caption = el("p", { id: "qkv-caption", class: "qkv-caption" });
    root.appendChild(caption);
    const stage = el("div", { id: "qkv-stage", class: "qkv-stage" });
    root.appendChild(stage);

    function fillOptions() {
      const k = kinds[state.kind], nL = k.weights.length, nH = k.weights[0].length;
      layerSel.textContent = "";
      for (let l = 0; l < nL; l++) layerSel.appendChild(el("option", { value: l }, "layer " + (l + 1)));
      headSel.textContent = "";
      headSel.appendChild(el("option", { value: "mean" }, "mean of " + nH + " heads"));
      for (let h = 0; h < nH; h++) headSel.appendChild(el("option", { value: h }, "head " + (h + 1)));
      state.layer = Math.min(state.layer, nL - 1);
      if (state.head !== "mean" && state.head >= nH) state.head = "mean";
      layerSel.value = state.layer; headSel.value = state.head;
    }

    function update() {
      if (state.view === "alignment") {
        const ci = kinds.findIndex((k) => k.name === "cross");
        if (state.kind !== ci) { state.kind = ci; kindSel.value = ci; fillOptions(); }
      }
      const k = kinds[state.kind];
      viewButtons.forEach((b) => b.classList.toggle("qkv-active", b.dataset.view === state.view));
      headSel.disabled = state.view !== "head";
      layerSel.disabled = state.view === "model";
      stage.textContent = "";
      tooltip.style.display = "none";
      const layer = k.weights[state.layer];
      if (state.view === "head") {
        const matrix = state.head === "mean" ? meanHeads(layer) : layer[state.head];
        const who = state.head === "mean" ? "mean of the heads" : "head " + (Number(state.head) + 1);
        caption.textContent = k.title + " — layer " + (state.layer + 1) + ", " + who +
          ". Row = query (attends), column = key (attended to); each row sums to 1. Hover a cell.";
        const canvas = el("canvas", { id: "qkv-heatmap" });
        stage.appendChild(canvas);
        drawHeatmap(canvas, matrix, k.query_tokens, k.key_tokens, tooltip);
      } else if (state.view === "model") {
        caption.textContent = k.title + " — every layer (rows) and head (columns). Click one to open it.";
        const grid = el("div", { class: "qkv-grid", id: "qkv-grid" });
        grid.style.gridTemplateColumns = "auto repeat(" + layer.length + ", auto)";
        k.weights.forEach((heads, l) => {
          grid.appendChild(el("span", { class: "qkv-rowlabel" }, "layer " + (l + 1)));
          heads.forEach((m, h) => {
            const fig = el("figure", { class: "qkv-thumb", title: "layer " + (l + 1) + ", head " + (h + 1) });
            const c = el("canvas");
            drawThumb(c, m);
            fig.appendChild(c);
            fig.appendChild(el("figcaption", {}, "L" + (l + 1) + " H" + (h + 1)));
            fig.onclick = () => {
              state.view = "head"; state.layer = l; state.head = h;
              layerSel.value = l; headSel.value = h; update();
            };
            grid.appendChild(fig);
          });
        });
        stage.appendChild(grid);
      } else {
        const matrix = meanHeads(layer);
        caption.textContent = "Source–target alignment: cross-attention of layer " + (state.layer + 1) +
          " averaged over its " + layer.length + " heads (line opacity = weight).";
        const svg = svgEl("svg", { id: "qkv-align", class: "qkv-align" });
        stage.appendChild(svg);
        drawAlignment(svg, matrix, k.key_tokens, k.query_tokens);
        const canvas = el("canvas", { id: "qkv-heatmap" });
        stage.appendChild(canvas);
        drawHeatmap(canvas, matrix, k.query_tokens, k.key_tokens, tooltip);
      }
    }

    kindSel.onchange = () => { state.kind = Number(kindSel.value); if (state.view === "alignment") state.view = "head"; fillOptions(); update(); };
    layerSel.onchange = () => { state.layer = Number(layerSel.value); update(); };
    headSel.onchange = () => { state.head = headSel.value === "mean" ? "mean" : Number(headSel.value); update(); };
    fillOptions();
    update();
    root.dataset.ready = "1";
  }

  window.QKV = { render: render, colour: colour, meanHeads: meanHeads };
})();
