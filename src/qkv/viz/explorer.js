// qkv attention explorer: flip through kinds, layers and heads of attention maps; hover a cell for the token
// pair and its weight. No dependencies. Used by the HTML export (qkv attention) and the web app (qkv serve).
//
// Data: {title, subtitle, kinds: [{name, title, query_tokens[Tq], key_tokens[Tk], weights[L][H][Tq][Tk]}],
//        alignment_layer?, walk? (qkv/viz/walk.py), lessons? (qkv/viz/lessons.py)}
// Views: "head" (one head, or the mean of a layer's heads, large; click a cell for its arithmetic, masked
// cells hatched), "lines" (bertviz-like: two token columns, hover a token), "model" (every layer × head as
// thumbnails, click one to open it), "alignment" (cross-attention averaged over the heads of a layer, as a
// matrix and as lines; opens on the PNG's layer), "scaling" (why √d_k), "positions" (§3.5), "hashtable"
// (attention as a soft dictionary lookup).
// The other scripts (explorer_panel.js, explorer_lines.js, explorer_lessons.js) add to window.QKV.
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

  // Diagonal hatching for masked cells (may not attend): grey lines on light grey, never a colour of the scale.
  function hatch(ctx, x, y, size) {
    ctx.save();
    ctx.fillStyle = "#e6e6e6"; ctx.fillRect(x, y, size, size);
    ctx.beginPath(); ctx.rect(x, y, size, size); ctx.clip();
    ctx.strokeStyle = "#8a8a8a"; ctx.lineWidth = 1;
    const step = Math.max(3, size / 4);
    for (let d = -size; d < size; d += step) {
      ctx.moveTo(x + d, y + size); ctx.lineTo(x + d + size, y);
    }
    ctx.stroke();
    ctx.restore();
  }

  // Draw a (Tq × Tk) matrix on a canvas with token labels; hovering a cell fills the tooltip.
  // opts: {mask: Tq × Tk of 0/1 (0 = masked, drawn hatched) or null, onClick(q, k), selected: [q, k]}
  function drawHeatmap(canvas, matrix, qTok, kTok, tooltip, opts) {
    opts = opts || {};
    const mask = opts.mask || null;
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
        if (mask && !mask[q][k]) { hatch(ctx, left + k * cell, top + q * cell, cell); continue; }
        ctx.fillStyle = colour(matrix[q][k] / vmax);
        ctx.fillRect(left + k * cell, top + q * cell, cell, cell);
      }
    }
    if (opts.selected) {
      const [sq, sk] = opts.selected;
      ctx.strokeStyle = "#e8112d"; ctx.lineWidth = 2;
      ctx.strokeRect(left + sk * cell + 1, top + sq * cell + 1, cell - 2, cell - 2);
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

    const cellAt = (ev) => {
      const r = canvas.getBoundingClientRect();
      const k = Math.floor((ev.clientX - r.left - left) / cell), q = Math.floor((ev.clientY - r.top - top) / cell);
      return (q < 0 || k < 0 || q >= tq || k >= tk) ? null : [q, k];
    };
    canvas.onmousemove = (ev) => {
      const at = cellAt(ev);
      if (!at) { tooltip.style.display = "none"; return; }
      const [q, k] = at;
      const masked = mask && !mask[q][k];
      tooltip.textContent = qTok[q] + " → " + kTok[k] + ": " + (masked ? "masked" : matrix[q][k].toFixed(4));
      tooltip.dataset.query = q; tooltip.dataset.key = k; tooltip.dataset.weight = matrix[q][k];
      tooltip.style.display = "block";
      tooltip.style.left = ev.pageX + 12 + "px"; tooltip.style.top = ev.pageY + 12 + "px";
    };
    canvas.onmouseleave = () => { tooltip.style.display = "none"; };
    canvas.onclick = (ev) => { const at = cellAt(ev); if (at && opts.onClick) opts.onClick(at[0], at[1]); };
    if (opts.onClick) canvas.style.cursor = "pointer";
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

  // The mask of one kind and layer (1 = may attend): from the walk-through when embedded, else the causal mask
  // of the decoder's self-attention (§3.2.3) by construction, else none known.
  function maskFor(data, kind, layer) {
    const walk = data.walk && data.walk.kinds && data.walk.kinds[kind.name];
    const entry = walk && walk.layers[layer];
    if (entry) return entry.mask;
    if (kind.name === "decoder_self") return kind.query_tokens.map((_, q) => kind.key_tokens.map((_, k) => (k <= q ? 1 : 0)));
    return null;
  }

  function render(root, data) {
    root.textContent = "";
    const kinds = data.kinds || [];
    if (!kinds.length) { root.appendChild(el("p", {}, "No attention maps.")); return; }
    const state = { kind: 0, layer: 0, head: "mean", view: "head", cell: null };
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
    const viewNames = [["head", "Head view"], ["lines", "Lines"], ["model", "All layers × heads"]];
    if (hasCross) viewNames.push(["alignment", "Alignment"]);
    if (data.lessons) viewNames.push(["scaling", "Why √d_k"], ["positions", "Positions"], ["hashtable", "Soft hash table"]);
    const viewButtons = viewNames.map(([v, label]) => {
      const b = el("button", { type: "button", id: "qkv-view-" + v, "data-view": v }, label);
      b.onclick = () => {
        if (v === "alignment" && state.view !== "alignment" && data.alignment_layer !== undefined) {
          state.layer = data.alignment_layer;  // the same layer as alignment_layer{l}.png
        }
        state.view = v; update();
      };
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
    const panel = el("div", { id: "qkv-panel", class: "qkv-panel" });
    root.appendChild(panel);

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

    function showPanel() {
      panel.textContent = "";
      if (!state.cell || !QKV.panel) return;
      QKV.panel(panel, data, kinds[state.kind], state.layer, state.head, state.cell[0], state.cell[1]);
    }

    function heatmap(matrix, k, withClick) {
      const canvas = el("canvas", { id: "qkv-heatmap" });
      stage.appendChild(canvas);
      drawHeatmap(canvas, matrix, k.query_tokens, k.key_tokens, tooltip, {
        mask: maskFor(data, k, state.layer),
        selected: withClick ? state.cell : null,
        onClick: withClick ? (q, kk) => { state.cell = [q, kk]; update(); } : null,
      });
    }

    function update() {
      if (state.view === "alignment") {
        const ci = kinds.findIndex((k) => k.name === "cross");
        if (state.kind !== ci) { state.kind = ci; kindSel.value = ci; fillOptions(); }
      }
      const k = kinds[state.kind];
      if (state.cell && (state.cell[0] >= k.query_tokens.length || state.cell[1] >= k.key_tokens.length)) state.cell = null;
      viewButtons.forEach((b) => b.classList.toggle("qkv-active", b.dataset.view === state.view));
      const lesson = ["scaling", "positions", "hashtable"].includes(state.view);
      headSel.disabled = !(state.view === "head" || state.view === "lines");
      layerSel.disabled = state.view === "model" || lesson;
      kindSel.disabled = lesson;
      stage.textContent = "";
      panel.textContent = "";
      tooltip.style.display = "none";
      const layer = k.weights[state.layer];
      const who = state.head === "mean" ? "mean of the heads" : "head " + (Number(state.head) + 1);
      if (state.view === "head") {
        const matrix = state.head === "mean" ? meanHeads(layer) : layer[state.head];
        caption.textContent = k.title + " — layer " + (state.layer + 1) + ", " + who +
          ". Row = query (attends), column = key (attended to); each row sums to 1; hatched = masked " +
          "(may not attend), not a weight of 0. Hover a cell; click one to see the arithmetic that made it.";
        heatmap(matrix, k, true);
        showPanel();
      } else if (state.view === "lines") {
        caption.textContent = k.title + " — layer " + (state.layer + 1) + ", " +
          (state.head === "mean" ? "every head (one colour each)" : who) +
          ". Queries on the left, keys on the right; line opacity = weight. Hover a token on the left for what " +
          "it attends to, on the right for what attends to it.";
        QKV.drawLines(stage, k, layer, state.head, maskFor(data, k, state.layer));
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
      } else if (state.view === "alignment") {
        const matrix = meanHeads(layer);
        caption.textContent = "Source–target alignment: cross-attention of layer " + (state.layer + 1) +
          " averaged over its " + layer.length + " heads (line opacity = weight).";
        const svg = svgEl("svg", { id: "qkv-align", class: "qkv-align" });
        stage.appendChild(svg);
        drawAlignment(svg, matrix, k.key_tokens, k.query_tokens);
        heatmap(matrix, k, false);
      } else if (state.view === "scaling") {
        caption.textContent = "Why Eq. 1 divides by √d_k (footnote 4 of §3.2.1): move the slider over d_k.";
        QKV.drawScaling(stage, data.lessons.scaling);
      } else if (state.view === "hashtable") {
        caption.textContent = "Attention as a soft hash table (§3.2.1): a dictionary lookup next to Eq. 1.";
        QKV.drawHashTable(stage, data.lessons.hash_table);
      } else {
        caption.textContent = "The sinusoidal positional encoding of §3.5 and the similarity of positions.";
        QKV.drawPositions(stage, data.lessons.positions, tooltip);
      }
      layerSel.value = state.layer;
    }

    kindSel.onchange = () => {
      state.kind = Number(kindSel.value); state.cell = null;
      if (state.view === "alignment") state.view = "head";
      fillOptions(); update();
    };
    layerSel.onchange = () => { state.layer = Number(layerSel.value); update(); };
    headSel.onchange = () => { state.head = headSel.value === "mean" ? "mean" : Number(headSel.value); update(); };
    fillOptions();
    update();
    root.dataset.ready = "1";
  }

  window.QKV = Object.assign(window.QKV || {}, {
    render: render, colour: colour, meanHeads: meanHeads, el: el, svgEl: svgEl, hatch: hatch, drawHeatmap: drawHeatmap,
  });
})();
