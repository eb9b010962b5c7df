// Attribution view: the prompt and generated text as tokens; hover or select a generated token to color
// every earlier token by its score (signed: blue/orange; unsigned: blue), value on hover; method switch;
// per-row or shared color scale, stated in the legend; the target score and, for IG, the convergence delta.
"use strict";

// The state shared by the attribution views: method index, scale mode, selected target position.
EccoViews.AttributionState = function (data) {
  var listeners = [];
  var state = {
    method: 0,
    scale: "row",
    selected: data.attributions.length ? data.attributions[0].targets[0] : null,
    current: function () {
      return data.attributions[state.method];
    },
    set: function (changes) {
      Object.keys(changes).forEach(function (key) {
        state[key] = changes[key];
      });
      listeners.forEach(function (fn) {
        fn();
      });
    },
    on: function (fn) {
      listeners.push(fn);
    },
  };
  return state;
};

// The color scale of row `row` of attribution `a`: its own max |score|, or the whole matrix's.
EccoViews.rowScale = function (a, row, mode) {
  if (mode === "shared") {
    if (a._shared === undefined) a._shared = EccoViews.maxAbs(a.rows);
    return a._shared;
  }
  if (a._rowScales === undefined) a._rowScales = [];
  if (a._rowScales[row] === undefined) a._rowScales[row] = EccoViews.maxAbs([a.rows[row]]);
  return a._rowScales[row];
};

EccoViews.scaleSentence = function (a, mode, scale) {
  var what = a.signed ? "signed scores (blue +, orange \u2212)" : "unsigned scores";
  var how =
    mode === "shared"
      ? "one scale for every target: full color = max |score| of the whole matrix = "
      : "a scale per target: full color = max |score| of the shown row = ";
  return what + "; " + how + EccoViews.fmt(scale) + ".";
};

EccoViews.attribution = function (root, data, state) {
  var V = EccoViews;
  var section = V.section(
    root,
    "attribution",
    "Attribution",
    "Hover or select (click, Tab, arrow keys) a generated token: every earlier token is colored by how much it " +
      "contributed to it. Hover a colored token for its value."
  );
  var controls = V.el("div", {class: "controls"}, []);
  section.appendChild(controls);
  controls.appendChild(
    V.radios(
      "methods",
      "Method",
      data.attributions.map(function (a, i) {
        return {value: String(i), label: a.method};
      }),
      "0",
      function (value) {
        state.set({method: Number(value)});
      }
    )
  );
  controls.appendChild(
    V.radios(
      "scale",
      "Color scale",
      [
        {value: "row", label: "per target"},
        {value: "shared", label: "shared"},
      ],
      "row",
      function (value) {
        state.set({scale: value});
      }
    )
  );
  var legendHolder = V.el("div", {class: "legend-holder"}, []);
  var text = V.el("div", {class: "tokens", role: "group", "aria-label": "tokens"}, []);
  var readout = V.el("div", {class: "readout", "aria-live": "polite"}, ["\u00a0"]);
  var info = V.el("table", {class: "target-info"}, []);
  section.appendChild(legendHolder);
  section.appendChild(text);
  section.appendChild(readout);
  section.appendChild(info);

  var spans = [];
  var fragment = document.createDocumentFragment();
  data.tokens.forEach(function (token, pos) {
    var generated = pos >= data.prompt_length;
    if (pos === data.prompt_length) fragment.appendChild(V.el("span", {class: "boundary", title: "generated from here"}, ["\u2502"]));
    var span = V.tokenSpan(token, pos, generated ? "generated" : "prompt");
    spans.push(span);
    fragment.appendChild(span);
  });
  text.appendChild(fragment);
  var hovered = null;

  function targetsOf(a) {
    return a ? a.targets : [];
  }

  function shown() {
    return hovered !== null ? hovered : state.selected;
  }

  function infoRow(label, field, value, text) {
    return V.el("tr", {}, [
      V.el("th", {}, [label]),
      V.el("td", {"data-field": field, "data-value": value === null ? null : value}, [text]),
    ]);
  }

  function describe(a, row, pos) {
    info.textContent = "";
    if (row < 0) return;
    var token = data.tokens[pos];
    info.appendChild(infoRow("target token", "position", pos, V.quoted(token.text) + " at position " + pos));
    info.appendChild(infoRow("explained scalar", "target", a.target, (a.target || "default") + " of the chosen token"));
    info.appendChild(infoRow("target score", "target_score", a.target_scores[row], V.fmt(a.target_scores[row])));
    if (a.baseline_scores.length)
      info.appendChild(infoRow("baseline score", "baseline_score", a.baseline_scores[row], V.fmt(a.baseline_scores[row]) + " (baseline " + (a.baseline || "?") + ")"));
    if (a.convergence_deltas.length)
      info.appendChild(infoRow("IG convergence delta", "convergence_delta", a.convergence_deltas[row], V.fmt(a.convergence_deltas[row]) + " = \u03a3 scores \u2212 (f(input) \u2212 f(baseline)), before aggregation"));
    if (a.n_steps.length) info.appendChild(infoRow("IG steps", "n_steps", a.n_steps[row], String(a.n_steps[row]) + (a.integration ? " (" + a.integration + ")" : "")));
    if (a.contrast_token_id !== null) info.appendChild(infoRow("contrast token", "contrast", a.contrast_token_id, V.idLabel(data, a.contrast_token_id)));
    info.appendChild(infoRow("aggregation", "aggregation", a.aggregation, a.aggregation || "default"));
  }

  function render() {
    var a = state.current();
    var pos = shown();
    var row = a && pos !== null ? a.targets.indexOf(pos) : -1;
    var scores = row >= 0 ? a.rows[row] : null;
    var scale = row >= 0 ? EccoViews.rowScale(a, row, state.scale) : 0;
    var explainedSet = new Set(targetsOf(a));
    spans.forEach(function (span, j) {
      var explained = explainedSet.has(j);
      span.classList.toggle("explained", explained);
      span.classList.toggle("target", j === pos && row >= 0);
      span.classList.toggle("selected", j === state.selected);
      if (explained) {
        span.setAttribute("tabindex", "0");
        span.setAttribute("role", "button");
        span.setAttribute("aria-pressed", j === state.selected ? "true" : "false");
      } else {
        span.removeAttribute("tabindex");
        span.removeAttribute("role");
        span.removeAttribute("aria-pressed");
      }
      var value = scores && j < a.n_sources && j < pos ? scores[j] : undefined;
      if (value === undefined) {
        span.removeAttribute("data-score");
        V.paint(span, null, 0, false);
        span.title = V.quoted(data.tokens[j].text) + " (position " + j + ")";
      } else {
        span.setAttribute("data-score", value === null ? "n/a" : String(value));
        V.paint(span, value, scale, a.signed);
        span.title = V.quoted(data.tokens[j].text) + " (position " + j + "): " + V.fmt(value);
      }
    });
    legendHolder.textContent = "";
    if (row >= 0) legendHolder.appendChild(V.legend(a.signed, scale, EccoViews.scaleSentence(a, state.scale, scale)));
    describe(a, row, pos);
  }

  function showSource(j) {
    var span = spans[j];
    if (!span.hasAttribute("data-score")) return;
    var pos = shown();
    readout.textContent =
      V.quoted(data.tokens[j].text) + " (" + j + ") \u2192 " + V.quoted(data.tokens[pos].text) + " (" + pos + "): " +
      V.fmt(Number(span.getAttribute("data-score")));
    readout.setAttribute("data-source", j);
    readout.setAttribute("data-value", span.getAttribute("data-score"));
  }

  function step(from, by) {
    var targets = targetsOf(state.current());
    var i = targets.indexOf(from);
    var next = targets[Math.max(0, Math.min(targets.length - 1, (i < 0 ? 0 : i) + by))];
    if (next !== undefined) spans[next].focus();
  }

  text.addEventListener("mouseover", function (event) {
    var span = event.target.closest(".tok");
    if (!span) return;
    var j = Number(span.getAttribute("data-pos"));
    if (span.classList.contains("explained") && j !== hovered) {
      hovered = j;
      render();
    } else showSource(j);
  });
  text.addEventListener("mouseleave", function () {
    hovered = null;
    render();
  });
  text.addEventListener("click", function (event) {
    var span = event.target.closest(".tok.explained");
    if (span) state.set({selected: Number(span.getAttribute("data-pos"))});
  });
  text.addEventListener("focusin", function (event) {
    var span = event.target.closest(".tok.explained");
    if (span) state.set({selected: Number(span.getAttribute("data-pos"))});
  });
  text.addEventListener("keydown", function (event) {
    var span = event.target.closest(".tok.explained");
    if (!span) return;
    var pos = Number(span.getAttribute("data-pos"));
    var moves = {ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1, Home: -1e9, End: 1e9};
    if (event.key in moves) {
      step(pos, moves[event.key]);
      event.preventDefault();
    } else if (event.key === "Enter" || event.key === " ") {
      state.set({selected: pos});
      event.preventDefault();
    } else if (event.key === "Escape") {
      state.set({selected: null});
    }
  });
  state.on(function () {
    var a = state.current();
    if (a && state.selected !== null && a.targets.indexOf(state.selected) < 0) state.selected = a.targets[0];
    render();
  });
  render();
};
