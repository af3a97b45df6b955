// qkv explorer: the two lessons, from numbers computed in Python and embedded in the page (qkv/viz/lessons.py).
// "Why √d_k": a slider over d_k shows Var(q·k), the softmax entropy and the largest weight, scaled and not
// (qkv.viz.explain.scaling_table, the table `qkv explain` prints). "Positions": the sinusoidal encoding matrix
// and the similarity of positions (what `qkv positions` draws); a slider picks the position p whose row is drawn.
// "Soft hash table": a dictionary lookup next to Eq. 1 on the same small table (qkv.viz.hashtable, what
// `qkv explain --hash-table` prints); a slider over the temperature τ sharpens the softmax down to hard attention.
(function () {
  "use strict";
  const QKV = window.QKV;

  function bar(value, max, colour) {
    const outer = QKV.el("span", { class: "qkv-bar" });
    const inner = QKV.el("span", { class: "qkv-bar-fill" });
    inner.style.width = Math.max(0, Math.min(100, (100 * value) / max)).toFixed(1) + "%";
    inner.style.background = colour;
    outer.appendChild(inner);
    return outer;
  }

  function drawScaling(stage, scaling) {
    const el = QKV.el, rows = scaling.rows;
    const box = el("div", { class: "qkv-lesson", id: "qkv-scaling" });
    const label = el("label", { for: "qkv-dk" }, "d_k = ");
    const value = el("strong", { id: "qkv-dk-value" });
    label.appendChild(value);
    const slider = el("input", { type: "range", id: "qkv-dk", min: 0, max: rows.length - 1, step: 1, value: Math.min(6, rows.length - 1) });
    box.appendChild(label);
    box.appendChild(slider);
    const t = el("table", { class: "qkv-table", id: "qkv-scaling-table" });
    box.appendChild(t);
    box.appendChild(el("p", { class: "qkv-caption" }, "q and k have " + "N(0, 1) entries: q·k is a sum of d_k products, so " +
      "Var(q·k) ≈ d_k. Unscaled, the softmax over " + scaling.n_keys + " keys saturates toward one-hot as d_k grows " +
      "(entropy → 0, largest weight → 1, vanishing gradients); divided by √d_k the variance stays 1 and the softmax " +
      "spread, whatever d_k. Uniform entropy = ln " + scaling.n_keys + " = " + scaling.ln_n_keys.toFixed(3) +
      " nats. Measured over " + "the same random draws as `qkv explain`'s table (seed " + scaling.seed + ")."));
    stage.appendChild(box);
    function show() {
      const r = rows[Number(slider.value)];
      value.textContent = String(r.d_k);
      t.textContent = "";
      const head = el("tr");
      ["", "unscaled: q·k", "scaled: q·k / √d_k"].forEach((h) => head.appendChild(el("th", {}, h)));
      t.appendChild(head);
      const lines = [
        ["Var", "var", r.var_dot, r.var_scaled, Math.max(r.var_dot, r.var_scaled)],
        ["softmax entropy (nats)", "ent", r.entropy_unscaled, r.entropy_scaled, scaling.ln_n_keys],
        ["largest weight", "max", r.max_weight_unscaled, r.max_weight_scaled, 1],
      ];
      for (const [name, id, raw, scaled, max] of lines) {
        const tr = el("tr");
        tr.appendChild(el("td", {}, name));
        [["unscaled", raw, "#d62728"], ["scaled", scaled, "#1f77b4"]].forEach(([which, v, colour]) => {
          const td = el("td");
          td.appendChild(el("span", { id: "qkv-" + id + "-" + which, class: "qkv-num", "data-v": String(v) }, v.toFixed(3)));
          td.appendChild(bar(v, max, colour));
          tr.appendChild(td);
        });
        t.appendChild(tr);
      }
    }
    slider.oninput = show;
    show();
  }

  // a (rows × cols) matrix as pixels on a canvas; colourOf(v) -> css colour; hover shows the value
  function drawMatrix(canvas, m, colourOf, tooltip, describe) {
    const rows = m.length, cols = m[0].length;
    const cell = Math.max(1, Math.min(8, Math.floor(560 / Math.max(rows, cols))));
    canvas.width = cols * cell; canvas.height = rows * cell;
    const ctx = canvas.getContext("2d");
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) {
      ctx.fillStyle = colourOf(m[r][c]);
      ctx.fillRect(c * cell, r * cell, cell, cell);
    }
    canvas.onmousemove = (ev) => {
      const b = canvas.getBoundingClientRect();
      const c = Math.floor((ev.clientX - b.left) / cell), r = Math.floor((ev.clientY - b.top) / cell);
      if (r < 0 || c < 0 || r >= rows || c >= cols) { tooltip.style.display = "none"; return; }
      tooltip.textContent = describe(r, c, m[r][c]);
      tooltip.style.display = "block";
      tooltip.style.left = ev.pageX + 12 + "px"; tooltip.style.top = ev.pageY + 12 + "px";
    };
    canvas.onmouseleave = () => { tooltip.style.display = "none"; };
  }

  function redBlue(v) {  // -1 blue … 0 white … 1 red
    const t = Math.max(-1, Math.min(1, v));
    const a = Math.round(255 * (1 - Math.abs(t)));
    return t >= 0 ? "rgb(255," + a + "," + a + ")" : "rgb(" + a + "," + a + ",255)";
  }

  function drawPositions(stage, pos, tooltip) {
    const el = QKV.el, svgEl = QKV.svgEl;
    const box = el("div", { class: "qkv-lesson", id: "qkv-positions" });
    const T = pos.table.length, D = pos.d_model;
    box.appendChild(el("p", { class: "qkv-caption" }, "PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = " +
      "cos(pos / 10000^(2i/d_model)); " + T + " positions × d_model = " + D + ". Left: the matrix (row = position, " +
      "column = dimension; fast waves first). Right: PE(p)·PE(q), which depends only on p − q."));
    const pics = el("div", { class: "qkv-pics" });
    const pe = el("canvas", { id: "qkv-pe" }), sim = el("canvas", { id: "qkv-pe-sim" });
    pics.appendChild(pe); pics.appendChild(sim);
    box.appendChild(pics);
    drawMatrix(pe, pos.table, redBlue, tooltip, (r, c, v) => "PE(" + r + ", " + c + ") = " + v.toFixed(3));
    let smax = -Infinity, smin = Infinity;
    pos.similarity.forEach((r) => r.forEach((v) => { smax = Math.max(smax, v); smin = Math.min(smin, v); }));
    drawMatrix(sim, pos.similarity, (v) => QKV.colour((v - smin) / (smax - smin || 1)), tooltip,
      (r, c, v) => "PE(" + r + ")·PE(" + c + ") = " + v.toFixed(3));
    const label = el("label", { for: "qkv-pos" }, "position p = ");
    const value = el("strong", { id: "qkv-pos-value" });
    label.appendChild(value);
    const slider = el("input", { type: "range", id: "qkv-pos", min: 0, max: T - 1, step: 1, value: Math.floor(T / 2) });
    box.appendChild(label); box.appendChild(slider);
    const w = 600, h = 140;
    const plot = svgEl("svg", { id: "qkv-pos-plot", width: w, height: h, class: "qkv-plot" });
    box.appendChild(plot);
    stage.appendChild(box);
    function show() {
      const p = Number(slider.value), r = pos.similarity[p];
      value.textContent = String(p);
      plot.textContent = "";
      const x = (q) => 30 + (q * (w - 40)) / Math.max(1, T - 1), y = (v) => h - 10 - ((v - smin) / (smax - smin || 1)) * (h - 30);
      plot.appendChild(svgEl("polyline", { points: r.map((v, q) => x(q) + "," + y(v)).join(" "), fill: "none", stroke: "#1f77b4", "stroke-width": 2 }));
      plot.appendChild(svgEl("circle", { cx: x(p), cy: y(r[p]), r: 4, fill: "#d62728" }));
      plot.appendChild(svgEl("text", { x: 34, y: 14, class: "qkv-plot-label" }, "PE(" + p + ")·PE(q) over q; peak " + r[p].toFixed(2) + " at q = p"));
    }
    slider.oninput = show;
    show();
  }

  function drawHashTable(stage, table) {
    const el = QKV.el, fmt = (xs) => "[" + xs.map((x) => x.toFixed(3)).join(", ") + "]";
    const box = el("div", { class: "qkv-lesson", id: "qkv-hashtable" });
    const qLabel = el("label", { for: "qkv-ht-query" }, "query ");
    const qSel = el("select", { id: "qkv-ht-query" });
    table.queries.forEach((q, i) => qSel.appendChild(el("option", { value: i }, q.name + " = " + fmt(q.query))));
    qLabel.appendChild(qSel);
    const tLabel = el("label", { for: "qkv-ht-tau" }, "  τ = ");
    const tValue = el("strong", { id: "qkv-ht-tau-value" });
    tLabel.appendChild(tValue);
    const sweep0 = table.queries[0].sweep;
    const one = Math.max(0, sweep0.findIndex((r) => !r.hard && r.temperature === 1));
    const slider = el("input", { type: "range", id: "qkv-ht-tau", min: 0, max: sweep0.length - 1, step: 1, value: one });
    box.appendChild(qLabel); box.appendChild(tLabel); box.appendChild(slider);
    const t = el("table", { class: "qkv-table", id: "qkv-ht-table" });
    box.appendChild(t);
    const result = el("p", { class: "qkv-caption", id: "qkv-ht-result" });
    box.appendChild(result);
    box.appendChild(el("p", { class: "qkv-caption" }, "A dictionary returns the value of the key that equals the " +
      "query, and nothing for any other query. Attention (Eq. 1) returns softmax(q·Kᵀ / (τ √d_k)) V: a blend of " +
      "all values, weighted by how well each key matches (τ = 1 is the paper). Lowering τ sharpens the weights " +
      "into a one-hot on the best key (hard attention, the last stop of the slider), and the soft lookup becomes " +
      "the exact one; a query that equals no key still gets an answer, tending to its nearest key's value."));
    stage.appendChild(box);
    function show() {
      const q = table.queries[Number(qSel.value)], r = q.sweep[Number(slider.value)];
      tValue.textContent = r.hard ? "→ 0 (hard: argmax)" : String(r.temperature);
      t.textContent = "";
      const head = el("tr");
      ["key", "key vector", "value", "q·k / √d_k", "weight"].forEach((h) => head.appendChild(el("th", {}, h)));
      t.appendChild(head);
      table.keys.forEach((name, i) => {
        const tr = el("tr");
        tr.appendChild(el("td", {}, name));
        tr.appendChild(el("td", {}, fmt(table.key_vectors[i])));
        tr.appendChild(el("td", {}, fmt(table.values[i])));
        tr.appendChild(el("td", {}, q.scores[i].toFixed(3)));
        const td = el("td");
        td.appendChild(el("span", { id: "qkv-ht-w-" + i, class: "qkv-num", "data-v": String(r.weights[i]) }, r.weights[i].toFixed(3)));
        td.appendChild(bar(r.weights[i], 1, "#1f77b4"));
        tr.appendChild(td);
        t.appendChild(tr);
      });
      const exact = q.exact_key === null
        ? "dictionary: no key equals " + q.name + " → KeyError; nearest key " + q.nearest_key + " → " + fmt(q.target)
        : "dictionary: key " + q.exact_key + " → " + fmt(q.exact_value);
      result.textContent = "";
      result.appendChild(el("span", { id: "qkv-ht-output", "data-v": String(r.output[0]) }, "attention: " + fmt(r.output)));
      result.appendChild(el("span", {}, "  ·  " + exact + "  ·  |difference| = " + r.error.toExponential(2) +
        ", entropy " + r.entropy.toFixed(3) + " nats"));
    }
    qSel.onchange = show;
    slider.oninput = show;
    show();
  }

  QKV.drawScaling = drawScaling;
  QKV.drawHashTable = drawHashTable;
  QKV.drawPositions = drawPositions;
})();
