// Mounting: read the page's data (the <script type="application/json"> next to the script), draw a header
// and every view the explanation has data for (or draw them from data given: the live page). A failure is
// reported in the page and on the console.
"use strict";

EccoViews.header = function (root, data) {
  var V = EccoViews;
  var generated = data.tokens.slice(data.prompt_length).map(function (t) {
    return t.text;
  }).join("");
  var facts = [
    "model " + (data.model || "?"),
    "engine " + (data.engine_version || "?"),
    data.prompt_length + " prompt tokens",
    data.tokens.length - data.prompt_length + " generated",
    "finish reason: " + (data.finish_reason || "?"),
  ];
  root.appendChild(V.el("header", {}, [
    V.el("h1", {}, ["ecco explanation"]),
    V.el("p", {class: "facts"}, [facts.join(" \u00b7 ")]),
    V.el("p", {class: "generated"}, ["generated: ", V.el("code", {}, [V.quoted(generated)])]),
  ]));
};

// Mount the views of the data in the page (its <script type="application/json" class="ecco-data">).
EccoViews.mount = function (root) {
  EccoViews.show(root, JSON.parse(root.querySelector("script.ecco-data").textContent));
};

// Draw every view of `data` (what view_data returns) into `root`, then mark it data-ready.
EccoViews.show = function (root, data) {
  var V = EccoViews;
  var views = V.el("div", {class: "views"}, []);
  root.appendChild(views);
  try {
    V.header(views, data);
    if (data.attributions.length) {
      var state = V.AttributionState(data);
      V.attribution(views, data, state);
      V.matrix(views, data, state);
    }
    var inside = data.internals;
    if (inside && inside.layer_predictions) V.layerPredictions(views, data);
    if (inside && inside.token_rankings) V.rankings(views, data);
    if (inside && inside.watch) V.watch(views, data);
    if (inside && inside.activations) V.activations(views, data);
    if (inside && inside.nmf) V.nmf(views, data);
    if (inside && inside.similarity) V.similarity(views, data);
    root.setAttribute("data-ready", "true");
  } catch (error) {
    views.appendChild(V.el("p", {class: "failure"}, ["This view failed: " + error]));
    console.error(error);
  }
};
