// Neuron views: the top activated FFNN neurons per token; NMF factors as colors over the text (Ecco's
// explore) with each factor's top neurons; the layer x layer representation similarity heatmaps.
"use strict";

// Tokens as a strip of spans; onHover(position) on hover or focus of a token.
EccoViews.tokenStrip = function (data, onHover) {
  var V = EccoViews;
  var strip = V.el("div", {class: "tokens", role: "group", "aria-label": "tokens"}, []);
  data.tokens.forEach(function (token, pos) {
    var span = V.tokenSpan(token, pos, pos >= data.prompt_length ? "generated" : "prompt");
    span.setAttribute("tabindex", "0");
    strip.appendChild(span);
  });
  function pick(event) {
    var span = event.target.closest(".tok");
    if (span) onHover(Number(span.getAttribute("data-pos")), span);
  }
  strip.addEventListener("mouseover", pick);
  strip.addEventListener("focusin", pick);
  return strip;
};

EccoViews.activations = function (root, data) {
  var V = EccoViews;
  var act = data.internals.activations;
  var section = V.section(
    root,
    "activations",
    "FFNN activations",
    "Hover or focus a token: its most activated neurons in each block (order: " + act.order + "; " + act.n_neurons +
      " neurons per block)."
  );
  var detail = V.el("div", {class: "table-holder"}, []);
  function show(pos) {
    var row = act.positions.indexOf(pos);
    detail.textContent = "";
    if (row < 0) {
      detail.appendChild(V.el("p", {class: "note"}, ["Position " + pos + " was not captured."]));
      return;
    }
    var table = V.el("table", {class: "grid neurons", "data-position": pos}, [
      V.el("caption", {}, [V.quoted(data.tokens[pos].text) + " at position " + pos]),
    ]);
    act.layers.forEach(function (block) {
      var tr = V.el("tr", {}, [V.el("th", {}, ["block " + block.layer])]);
      var scale = Math.max.apply(null, [1e-12].concat(block.top[row].map(function (nv) {
        return Math.abs(nv[1] || 0);
      })));
      block.top[row].forEach(function (nv) {
        var td = V.el("td", {"data-layer": block.layer, "data-neuron": nv[0], "data-value": nv[1]}, ["#" + nv[0] + " ", V.el("span", {class: "prob"}, [V.fmt(nv[1])])]);
        V.paint(td, nv[1], scale, true);
        tr.appendChild(td);
      });
      table.appendChild(tr);
    });
    detail.appendChild(table);
  }
  section.appendChild(V.tokenStrip(data, show));
  section.appendChild(detail);
  if (act.positions.length) show(act.positions[act.positions.length - 1]);
};

EccoViews.nmf = function (root, data) {
  var V = EccoViews;
  var nmf = data.internals.nmf;
  var n = nmf.strengths.length;
  var section = V.section(
    root,
    "nmf",
    "NMF factors of the activations",
    n + " factors of blocks " + nmf.layers.join(", ") + " (relative error " + V.fmt(nmf.relative_error) + ", " + nmf.n_iter +
      " iterations). Each token is colored by the chosen factor's strength (full color: that factor's max " +
      "over the tokens), or by its strongest factor with \u201call\u201d. Hover a token for every factor's strength."
  );
  var choice = "all";
  var readout = V.el("div", {class: "readout", "aria-live": "polite"}, ["\u00a0"]);
  var topList = V.el("div", {class: "factor-neurons"}, []);
  var maxima = nmf.strengths.map(function (row) {
    return V.maxAbs([row]);
  });
  var options = [{value: "all", label: "all"}].concat(nmf.strengths.map(function (_, c) {
    return {value: String(c), label: "factor " + c};
  }));
  section.appendChild(V.radios("factors", "Factor", options, "all", function (value) {
    choice = value;
    paint();
  }));
  var strip = V.tokenStrip(data, function (pos) {
    var col = nmf.positions.indexOf(pos);
    if (col < 0) {
      readout.textContent = V.quoted(data.tokens[pos].text) + " (" + pos + "): not factored";
      return;
    }
    readout.textContent = V.quoted(data.tokens[pos].text) + " (" + pos + "): " + nmf.strengths.map(function (row, c) {
      return "factor " + c + " " + V.fmt(row[col]);
    }).join(" \u00b7 ");
    readout.setAttribute("data-position", pos);
  });
  section.appendChild(strip);
  section.appendChild(readout);
  section.appendChild(topList);

  function rgba(hex, alpha) {
    var v = parseInt(hex.slice(1), 16);
    return "rgba(" + ((v >> 16) & 255) + "," + ((v >> 8) & 255) + "," + (v & 255) + "," + alpha.toFixed(3) + ")";
  }
  function paint() {
    strip.querySelectorAll(".tok").forEach(function (span) {
      var pos = Number(span.getAttribute("data-pos"));
      var col = nmf.positions.indexOf(pos);
      span.style.backgroundColor = "";
      span.removeAttribute("data-factor");
      span.removeAttribute("data-strength");
      if (col < 0) return;
      var factor = Number(choice);
      if (choice === "all") {
        factor = 0;
        nmf.strengths.forEach(function (row, c) {
          if ((row[col] || 0) / (maxima[c] || 1) > (nmf.strengths[factor][col] || 0) / (maxima[factor] || 1)) factor = c;
        });
      }
      var strength = nmf.strengths[factor][col];
      var alpha = maxima[factor] > 0 ? Math.max(0, strength || 0) / maxima[factor] : 0;
      span.style.backgroundColor = rgba(V.CATEGORY[factor % V.CATEGORY.length], alpha * 0.85);
      span.setAttribute("data-factor", factor);
      span.setAttribute("data-strength", strength === null ? "n/a" : strength);
    });
    topList.textContent = "";
    nmf.top.forEach(function (neurons, c) {
      if (choice !== "all" && Number(choice) !== c) return;
      topList.appendChild(V.el("div", {class: "factor", "data-factor": c}, [
        V.el("span", {class: "swatch", style: "background:" + V.CATEGORY[c % V.CATEGORY.length]}, []),
        "factor " + c + ": ",
        neurons.map(function (bnw) {
          return "block " + bnw[0] + " #" + bnw[1] + " (" + V.fmt(bnw[2]) + ")";
        }).join(", "),
      ]));
    });
  }
  paint();
};

EccoViews.similarity = function (root, data) {
  var V = EccoViews;
  var sim = data.internals.similarity;
  var section = V.section(
    root,
    "similarity",
    "Layer similarity (" + sim.method + ")",
    "Similarity between the representations of every pair of layers over " + sim.positions.length +
      " tokens. Color: 0 (white) to 1 (full blue); values outside [0, 1] are clipped in color only."
  );
  sim.matrices.forEach(function (m) {
    var hidden = m.representation === "hidden";
    var head = V.el("tr", {}, [V.el("th", {}, [hidden ? "lens layer" : "block"])]);
    m.layers.forEach(function (layer) {
      head.appendChild(V.el("th", {}, [String(layer)]));
    });
    var body = V.el("tbody", {}, []);
    m.matrix.forEach(function (row, i) {
      var tr = V.el("tr", {}, [V.el("th", {}, [String(m.layers[i])])]);
      row.forEach(function (value, j) {
        var td = V.el("td", {"data-i": m.layers[i], "data-j": m.layers[j], "data-value": value === null ? "n/a" : value, title: m.layers[i] + " vs " + m.layers[j] + ": " + V.fmt(value)}, [
          m.layers.length <= 16 ? V.fmt(value) : "",
        ]);
        V.paint(td, value === null ? null : Math.max(0, Math.min(1, value)), 1, false);
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    section.appendChild(V.el("div", {class: "table-holder"}, [
      V.el("table", {class: "grid similarity", "data-representation": m.representation}, [
        V.el("caption", {}, [hidden ? "hidden states (residual stream)" : "FFNN activations"]),
        V.el("thead", {}, [head]),
        body,
      ]),
    ]));
  });
  section.appendChild(V.legend(false, 1, "one scale for every cell: 0 \u2192 1"));
};
