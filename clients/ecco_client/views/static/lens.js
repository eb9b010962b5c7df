// Layer views (logit lens): the top-k tokens at every lens layer of a position; a lens-layers x generated
// tokens heatmap of each generated token's rank; the watch list's rank per layer, with overtakes marked.
// Lens layers 0..n_layers: 0 is the embeddings, n_layers the model's own output.
"use strict";

EccoViews.layerPredictions = function (root, data) {
  var V = EccoViews;
  var lens = data.internals.layer_predictions;
  var section = V.section(
    root,
    "layer-predictions",
    "Layer predictions (logit lens)",
    "The next token read from every layer's residual stream (final norm + unembedding); the last row is the " +
      "model's own output (max deviation " + V.fmt(lens.output_deviation) + "). Darker: more probable. The token " +
      "actually at the next position is outlined."
  );
  var holder = V.el("div", {class: "table-holder"}, []);
  function show(index) {
    var p = lens.predictions[index];
    var next = data.tokens[p.position + 1];
    holder.textContent = "";
    var head = V.el("tr", {}, [V.el("th", {}, ["layer"])]);
    (p.token_ids[0] || []).forEach(function (_, k) {
      head.appendChild(V.el("th", {}, ["#" + (k + 1)]));
    });
    var table = V.el("table", {class: "grid lens", "data-position": p.position}, [V.el("thead", {}, [head])]);
    var body = V.el("tbody", {}, []);
    p.token_ids.forEach(function (ids, layer) {
      var tr = V.el("tr", {}, [V.el("th", {}, [layer === 0 ? "0 (embeddings)" : layer === p.token_ids.length - 1 ? layer + " (output)" : String(layer)])]);
      ids.forEach(function (id, k) {
        var prob = p.probabilities[layer][k];
        var td = V.el("td", {"data-layer": layer, "data-id": id, "data-probability": prob === null ? "n/a" : prob, title: "p = " + V.fmt(prob)}, [
          V.el("span", {class: "tok-text"}, [V.idLabel(data, id)]),
          V.el("span", {class: "prob"}, [V.fmt(prob)]),
        ]);
        V.paint(td, prob, 1, false);
        if (next && next.id === id) td.classList.add("actual");
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    table.appendChild(body);
    holder.appendChild(table);
  }
  var select = V.el("select", {class: "position", "aria-label": "position"}, []);
  lens.predictions.forEach(function (p, i) {
    var token = data.tokens[p.position];
    select.appendChild(V.el("option", {value: i}, ["position " + p.position + ": after " + V.quoted(token ? token.text : "?")]));
  });
  select.addEventListener("change", function () {
    show(Number(select.value));
  });
  section.appendChild(V.el("label", {}, ["Position ", select]));
  section.appendChild(holder);
  if (lens.predictions.length) show(0);
};

EccoViews.rankings = function (root, data) {
  var V = EccoViews;
  var r = data.internals.token_rankings;
  var section = V.section(
    root,
    "rankings",
    "Rankings",
    "Rank (1 = top) of each generated token at every lens layer, read at the position that predicted it. " +
      "Darker: better rank (log scale)."
  );
  var layers = r.ranks.length ? r.ranks[0].length : 0;
  var head = V.el("tr", {}, [V.el("th", {}, ["layer \\ token"])]);
  r.positions.forEach(function (pos) {
    head.appendChild(V.el("th", {}, [V.quoted(data.tokens[pos] ? data.tokens[pos].text : V.idText(data, pos))]));
  });
  var body = V.el("tbody", {}, []);
  var worst = Math.log(1 + Math.max.apply(null, [1].concat([].concat.apply([], r.ranks))));
  for (var layer = layers - 1; layer >= 0; layer--) {
    var tr = V.el("tr", {}, [V.el("th", {}, [String(layer)])]);
    r.ranks.forEach(function (ranks, i) {
      var rank = ranks[layer];
      var td = V.el("td", {"data-layer": layer, "data-position": r.positions[i], "data-rank": rank, title: "p = " + V.fmt(r.probabilities[i][layer])}, [String(rank + 1)]);
      V.paint(td, 1 - Math.log(1 + rank) / worst, 1, false);
      tr.appendChild(td);
    });
    body.appendChild(tr);
  }
  section.appendChild(V.el("div", {class: "table-holder"}, [V.el("table", {class: "grid ranks"}, [V.el("thead", {}, [head]), body])]));
};

EccoViews.watch = function (root, data) {
  var V = EccoViews;
  var w = data.internals.watch;
  var section = V.section(
    root,
    "watch",
    "Watched tokens",
    "Rank (1 = top, log scale) of each watched token at every lens layer, read at position " + w.position + " (after " +
      V.quoted(data.tokens[w.position] ? data.tokens[w.position].text : "?") + "). A dashed line marks the layer " +
      "from which one token stays ranked above another."
  );
  var layers = w.ranks.length ? w.ranks[0].length : 0;
  var width = 640, height = 280, left = 56, right = 16, top = 16, bottom = 40;
  var maxRank = Math.max.apply(null, [1].concat([].concat.apply([], w.ranks))) + 1;
  function x(layer) {
    return left + (layers > 1 ? (layer * (width - left - right)) / (layers - 1) : 0);
  }
  function y(rank) {
    return top + (Math.log(rank + 1) / Math.log(maxRank + 1)) * (height - top - bottom);
  }
  var chart = V.svg("svg", {class: "watch-chart", viewBox: "0 0 " + width + " " + height, width: width, height: height, role: "img", "aria-label": "rank per layer of the watched tokens"}, []);
  chart.appendChild(V.svg("line", {x1: left, y1: height - bottom, x2: width - right, y2: height - bottom, class: "axis"}));
  chart.appendChild(V.svg("line", {x1: left, y1: top, x2: left, y2: height - bottom, class: "axis"}));
  for (var layer = 0; layer < layers; layer += Math.max(1, Math.ceil(layers / 12)))
    chart.appendChild(V.svg("text", {x: x(layer), y: height - bottom + 16, "text-anchor": "middle"}, [String(layer)]));
  chart.appendChild(V.svg("text", {x: (left + width - right) / 2, y: height - 4, "text-anchor": "middle"}, ["lens layer"]));
  [1, 10, 100, 1000, 10000, 100000].forEach(function (rank) {
    if (rank <= maxRank) chart.appendChild(V.svg("text", {x: left - 6, y: y(rank - 1) + 4, "text-anchor": "end"}, [String(rank)]));
  });
  w.overtakes.forEach(function (o) {
    var label = V.idLabel(data, w.token_ids[o.winner]) + " above " + V.idLabel(data, w.token_ids[o.loser]) + " from layer " + o.layer;
    var mark = V.svg("g", {class: "overtake", "data-winner": w.token_ids[o.winner], "data-loser": w.token_ids[o.loser], "data-layer": o.layer}, [
      V.svg("line", {x1: x(o.layer), y1: top, x2: x(o.layer), y2: height - bottom}),
      V.svg("title", {}, [label]),
    ]);
    chart.appendChild(mark);
  });
  var key = V.el("ul", {class: "key"}, []);
  w.ranks.forEach(function (ranks, i) {
    var color = V.CATEGORY[i % V.CATEGORY.length];
    var points = ranks.map(function (rank, layer) {
      return x(layer) + "," + y(rank);
    });
    var dash = i >= V.CATEGORY.length ? "4 3" : null;
    chart.appendChild(V.svg("polyline", {points: points.join(" "), stroke: color, "stroke-dasharray": dash, class: "series", "data-id": w.token_ids[i]}));
    ranks.forEach(function (rank, layer) {
      chart.appendChild(V.svg("circle", {cx: x(layer), cy: y(rank), r: 3, fill: color, "data-id": w.token_ids[i], "data-layer": layer, "data-rank": rank}, [
        V.svg("title", {}, [V.idLabel(data, w.token_ids[i]) + " layer " + layer + ": rank " + (rank + 1) + ", p = " + V.fmt(w.probabilities[i][layer])]),
      ]));
    });
    key.appendChild(V.el("li", {}, [V.el("span", {class: "swatch", style: "background:" + color}, []), V.idLabel(data, w.token_ids[i])]));
  });
  section.appendChild(chart);
  section.appendChild(key);
  var list = V.el("ul", {class: "overtakes"}, []);
  w.overtakes.forEach(function (o) {
    list.appendChild(V.el("li", {"data-layer": o.layer}, [
      V.idLabel(data, w.token_ids[o.winner]) + " overtakes " + V.idLabel(data, w.token_ids[o.loser]) + " at layer " + o.layer + " and stays above to the output",
    ]));
  });
  section.appendChild(list);
};
