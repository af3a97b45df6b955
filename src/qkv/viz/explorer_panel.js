// qkv explorer: the arithmetic panel. A click on cell (query i, key j) of head h shows the numbers that made
// it, from the walk-through the page carries (data.walk, built server-side by qkv/viz/walk.py with the code of
// `qkv explain`): x_i, q_i = x_i·W_Q, k_j, q_i·k_j, ÷ √d_k, the mask, the softmax row, Σ_j w_ij v_j, the
// concatenation of the heads and W_O, and the check against the model's forward pass.
(function () {
  "use strict";
  const QKV = window.QKV;
  const el = QKV.el;

  function fmt(v) { return Number(v).toFixed(4); }

  function num(v, id) {
    const attrs = { class: "qkv-num", "data-v": String(v) };
    if (id) attrs.id = id;
    return el("span", attrs, fmt(v));
  }

  // "[v0, v1, …] (first n of d) |·| = norm" with the values in data attributes for tests and copying
  function vec(values, norm, size, id) {
    const box = el("span", { class: "qkv-vec", id: id, "data-values": JSON.stringify(values), "data-norm": String(norm) });
    box.appendChild(document.createTextNode("[" + values.map(fmt).join(", ") + (size > values.length ? ", …" : "") + "]"));
    box.appendChild(el("span", { class: "qkv-norm" }, "  ‖·‖ = " + fmt(norm) +
      (size > values.length ? "  (first " + values.length + " of " + size + " values)" : "")));
    return box;
  }

  function step(parent, id, label) {
    const div = el("div", { class: "qkv-step", id: id });
    div.appendChild(el("div", { class: "qkv-step-label" }, label));
    parent.appendChild(div);
    return div;
  }

  function softmaxRow(scaled, maskRow) {
    let best = -Infinity;
    scaled.forEach((s, j) => { if (maskRow[j]) best = Math.max(best, s); });
    const e = scaled.map((s, j) => (maskRow[j] ? Math.exp(s - best) : 0));
    const total = e.reduce((a, b) => a + b, 0);
    return e.map((v) => (total > 0 ? v / total : 0));
  }

  function table(headers, id) {
    const t = el("table", { class: "qkv-table", id: id });
    const tr = el("tr");
    headers.forEach((h) => tr.appendChild(el("th", {}, h)));
    t.appendChild(tr);
    return t;
  }

  function row(t, cells, attrs) {
    const tr = el("tr", attrs || {});
    cells.forEach((c) => { const td = el("td"); if (c instanceof Node) td.appendChild(c); else td.textContent = c; tr.appendChild(td); });
    t.appendChild(tr);
    return tr;
  }

  function panel(root, data, kind, layer, head, i, j) {
    const qTok = kind.query_tokens, kTok = kind.key_tokens;
    root.appendChild(el("h3", { id: "qkv-panel-title" }, kind.title + " — layer " + (layer + 1) +
      (head === "mean" ? "" : ", head " + (Number(head) + 1)) + ": query i = " + i + " «" + qTok[i] + "» → key j = " +
      j + " «" + kTok[j] + "»"));
    const walk = data.walk, kw = walk && walk.kinds && walk.kinds[kind.name];
    const entry = kw && kw.layers[layer];
    if (head === "mean") {
      root.appendChild(el("p", { class: "qkv-note", id: "qkv-panel-note" },
        "The mean of the heads is a summary, not a computation of the model: pick one head (Head menu) to see its arithmetic."));
      return;
    }
    if (!entry) {
      const why = !walk ? "This page carries no walk-through (it was written from attention maps alone, without the model)." :
        "Layer " + (layer + 1) + " of this kind was left out: the walk-through this page embeds is limited to " +
        (walk.limit_bytes / 1e6).toFixed(1) + " MB of numbers (" + walk.omitted.length + " layer(s) over the limit).";
      root.appendChild(el("p", { class: "qkv-note", id: "qkv-panel-note" },
        why + " `qkv explain --layer L --head H` and `qkv serve` show every layer's arithmetic."));
      return;
    }
    const h = Number(head), H = entry.heads[h], dk = kw.d_k, D = kw.d_model, n = walk.n_show;
    const cross = kind.name === "cross";
    const mask = entry.mask, sqrt = Math.sqrt(dk);

    let s = step(root, "qkv-p-x", "x_i: the layer's input at query «" + qTok[i] + "» (what attention reads: the " +
      (cross ? "decoder state" : "layer input") + "; LayerNorm(x) under the pre-LN option), D = " + D);
    s.appendChild(vec(entry.x_q[i], entry.x_q_norm[i], D, "qkv-p-x-vec"));
    if (cross) {
      s = step(root, "qkv-p-m", "m_j: the encoder output at key «" + kTok[j] + "» (keys and values of cross-attention)");
      s.appendChild(vec(entry.x_kv[j], entry.x_kv_norm[j], D, "qkv-p-m-vec"));
    }
    const xj = cross ? "m_j" : "x_j";
    s = step(root, "qkv-p-q", "q_i = x_i · W_Q^" + (h + 1) + " + b_Q   (W_Q^" + (h + 1) + ": " + D + " × " + dk + ")");
    s.appendChild(vec(H.q[i], H.q_norm[i], dk, "qkv-p-q-vec"));
    s = step(root, "qkv-p-k", "k_j = " + xj + " · W_K^" + (h + 1) + " + b_K");
    s.appendChild(vec(H.k[j], H.k_norm[j], dk, "qkv-p-k-vec"));

    const score = H.scores[i][j];
    s = step(root, "qkv-p-dot", "q_i · k_j = Σ_d q_i[d] k_j[d]   (" + dk + " terms)");
    const terms = H.q[i].slice(0, 3).map((q, d) => fmt(q) + "×" + fmt(H.k[j][d]));
    s.appendChild(document.createTextNode(terms.join(" + ") + (dk > 3 ? " + …" : "") + " = "));
    s.appendChild(num(score, "qkv-p-score"));
    s = step(root, "qkv-p-scaled", "scaled by √d_k (Eq. 1)");
    s.appendChild(document.createTextNode(fmt(score) + " ÷ √" + dk + " = " + fmt(score) + " ÷ " + sqrt.toFixed(3) + " = "));
    s.appendChild(num(score / sqrt, "qkv-p-scaled-value"));
    s = step(root, "qkv-p-mask", "mask(i, j)");
    const why = kind.name === "decoder_self" && j > i ? " (causal, §3.2.3: key j comes after query i)" : " (padding)";
    s.appendChild(el("span", { id: "qkv-p-mask-value", "data-v": String(mask[i][j]) }, mask[i][j] ?
      "1: may attend" : "0: masked" + why + " — the score becomes −∞ before the softmax, so the weight is exactly 0"));

    // the whole softmax row, recomputed here from the scores, beside the model's weights
    const scaled = H.scores[i].map((v) => v / sqrt);
    const weights = softmaxRow(scaled, mask[i]);
    const model = kind.weights[layer][h][i];
    s = step(root, "qkv-p-row", "softmax over row i: weight_ij = exp(s_ij) / Σ_j' exp(s_ij')   (the clicked key highlighted)");
    const t = table(["j", "key", "q_i·k_j / √d_k", "weight (here)", "weight (model)"], "qkv-p-row-table");
    let worst = 0;
    kTok.forEach((tok, jj) => {
      worst = Math.max(worst, Math.abs(weights[jj] - model[jj]));
      const attrs = { "data-key": String(jj), "data-weight": String(weights[jj]), class: (jj === j ? "qkv-sel" : "") + (mask[i][jj] ? "" : " qkv-masked") };
      row(t, [String(jj), tok, mask[i][jj] ? num(scaled[jj]) : "masked (−∞)", num(weights[jj]), fmt(model[jj])], attrs);
    });
    s.appendChild(t);
    s.appendChild(el("p", { id: "qkv-p-row-check" }, "Σ weights = " + fmt(weights.reduce((a, b) => a + b, 0)) +
      "; this softmax vs the model's weights (rounded to 4 decimals): max |difference| = " + worst.toExponential(1)));

    // the output row: weighted sum of the value rows (first n values), recomputed here and from the server
    s = step(root, "qkv-p-out", "head_" + (h + 1) + "(i) = Σ_j weight_ij · v_j,   v_j = " + xj + " · W_V^" + (h + 1) + " + b_V");
    const ot = table(["j", "key", "weight", "v_j (first values)"], "qkv-p-out-table");
    const sum = H.v[0].map(() => 0);
    kTok.forEach((tok, jj) => {
      H.v[jj].forEach((v, d) => { sum[d] += weights[jj] * v; });
      row(ot, [String(jj), tok, fmt(weights[jj]), "[" + H.v[jj].map(fmt).join(", ") + "]"], { class: jj === j ? "qkv-sel" : "" });
    });
    s.appendChild(ot);
    const sumLine = el("p", {}, "Σ here: [" + sum.map(fmt).join(", ") + "];  the model's row: ");
    sumLine.appendChild(vec(H.head_output[i], H.head_output_norm[i], dk, "qkv-p-out-vec"));
    s.appendChild(sumLine);

    s = step(root, "qkv-p-concat", "Concat(head_1(i) … head_" + entry.heads.length + "(i)): " + D + " values, head h in columns " +
      "h·d_k … (h+1)·d_k − 1   ‖Concat_i‖ = " + fmt(entry.concat_norm[i]));
    entry.heads.forEach((other, hh) => {
      const line = el("div", { class: hh === h ? "qkv-sel" : "" }, "head " + (hh + 1) + " (columns " + hh * dk + "…" + ((hh + 1) * dk - 1) + "): ");
      line.appendChild(vec(other.head_output[i], other.head_output_norm[i], dk));
      s.appendChild(line);
    });
    s = step(root, "qkv-p-multi", "MultiHead(X)_i = Concat_i · W_O" + (entry.has_out_bias ? " + b_O" : "") + "   (W_O: " + D + " × " + D + ")");
    s.appendChild(vec(entry.output[i], entry.output_norm[i], D, "qkv-p-multi-vec"));

    s = step(root, "qkv-p-check", "Check against the model's forward pass");
    const parts = Object.entries(entry.check).map(([name, v]) => name + " " + Number(v).toExponential(2));
    s.appendChild(el("p", { id: "qkv-p-check-text" }, "These numbers were computed server-side (in Python, by qkv.viz.walk) " +
      "with the code `qkv explain` uses (qkv.viz.explain.multihead_by_hand) from the inputs the model's attention " +
      "module received, and compared with what the module returned: max |by hand − model| for this layer: " +
      parts.join(", ") + "; over every layer on this page: " + Number(walk.max_abs_diff).toExponential(2) + "."));
  }

  QKV.panel = panel;
  QKV.softmaxRow = softmaxRow;
})();
