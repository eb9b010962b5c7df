// ecco-serve views: shared helpers (elements, token text, numbers, color scales, legends).
// Plain DOM and SVG, no library. Everything hangs off one global, EccoViews.
"use strict";
var EccoViews = window.EccoViews || {};
window.EccoViews = EccoViews;

// Colors from a color-blind-safe diverging pair (blue / orange, as in ColorBrewer's PuOr/RdBu family):
// positive scores blue, negative orange; unsigned scores blue only.
EccoViews.POSITIVE = [33, 102, 172];
EccoViews.NEGATIVE = [179, 88, 6];
// Okabe-Ito colors for categories (NMF factors, watched tokens).
EccoViews.CATEGORY = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"];
EccoViews.SVG = "http://www.w3.org/2000/svg";

// el("span", {class: "tok", "data-pos": 3}, ["text", child]) -> element
EccoViews.el = function (tag, attrs, children) {
  var node = document.createElement(tag);
  EccoViews.fill(node, attrs, children);
  return node;
};
EccoViews.svg = function (tag, attrs, children) {
  var node = document.createElementNS(EccoViews.SVG, tag);
  EccoViews.fill(node, attrs, children);
  return node;
};
EccoViews.fill = function (node, attrs, children) {
  Object.keys(attrs || {}).forEach(function (name) {
    var value = attrs[name];
    if (value !== null && value !== undefined && value !== false) node.setAttribute(name, String(value));
  });
  (children || []).forEach(function (child) {
    if (child === null || child === undefined) return;
    node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
  });
};

// A token's text as written in a table cell or tooltip: quoted, escapes visible (" Paris", "\n").
EccoViews.quoted = function (text) {
  return JSON.stringify(text);
};

// A token's text as shown inline: the text itself (spaces kept by white-space: pre-wrap), a newline as
// a visible mark followed by the line break, other control characters as \uXXXX, "" as an empty mark.
EccoViews.inline = function (text) {
  if (text === "") return "\u2205";
  return text.replace(/[\u0000-\u001f\u007f]/g, function (c) {
    if (c === "\n") return "\u21b5\n";
    if (c === "\t") return "\u21e5\t";
    if (c === "\r") return "\u240d";
    return "\\u" + ("000" + c.charCodeAt(0).toString(16)).slice(-4);
  });
};

// The span of one token; classes mark whitespace-only and empty pieces so they stay visible.
EccoViews.tokenSpan = function (token, position, extraClass) {
  var classes = "tok " + (extraClass || "");
  if (token.text === "") classes += " empty";
  else if (/^\s+$/.test(token.text)) classes += " ws";
  return EccoViews.el("span", {class: classes, "data-pos": position}, [EccoViews.inline(token.text)]);
};

EccoViews.fmt = function (value) {
  if (value === null || value === undefined) return "n/a";
  var size = Math.abs(value);
  if (size === 0) return "0";
  if (size >= 1e-3 && size < 1e4) return String(Number(value.toPrecision(4)));
  return value.toExponential(2);
};

// Background for a score on a scale: alpha |value| / scale of the sign's color; null when no color.
EccoViews.shade = function (value, scale, signed) {
  if (value === null || value === undefined || !(scale > 0)) return null;
  var rgb = value < 0 && signed ? EccoViews.NEGATIVE : EccoViews.POSITIVE;
  var alpha = Math.min(1, Math.abs(value) / scale);
  return {css: "rgba(" + rgb.join(",") + "," + alpha.toFixed(3) + ")", dark: alpha > 0.55, alpha: alpha};
};

EccoViews.paint = function (node, value, scale, signed) {
  var s = EccoViews.shade(value, scale, signed);
  node.style.backgroundColor = s ? s.css : "";
  node.classList.toggle("dark", !!(s && s.dark));
};

EccoViews.maxAbs = function (rows) {
  var best = 0;
  rows.forEach(function (row) {
    row.forEach(function (v) {
      if (v !== null && Math.abs(v) > best) best = Math.abs(v);
    });
  });
  return best;
};

// A legend: the color bar with its end values and a sentence that states the scale.
EccoViews.legend = function (signed, scale, sentence) {
  var pos = "rgb(" + EccoViews.POSITIVE.join(",") + ")";
  var neg = "rgb(" + EccoViews.NEGATIVE.join(",") + ")";
  var bar = signed
    ? "linear-gradient(to right, " + neg + ", #fff, " + pos + ")"
    : "linear-gradient(to right, #fff, " + pos + ")";
  return EccoViews.el("div", {class: "legend", "data-scale": scale, "data-signed": String(signed)}, [
    EccoViews.el("span", {class: "end"}, [signed ? EccoViews.fmt(-scale) : "0"]),
    EccoViews.el("span", {class: "bar", style: "background:" + bar}, []),
    EccoViews.el("span", {class: "end"}, [EccoViews.fmt(scale)]),
    EccoViews.el("span", {class: "sentence"}, [sentence]),
  ]);
};

// A titled section of the page.
EccoViews.section = function (root, name, title, note) {
  var section = EccoViews.el("section", {class: "ecco-" + name, "aria-label": title}, [
    EccoViews.el("h2", {}, [title]),
    note ? EccoViews.el("p", {class: "note"}, [note]) : null,
  ]);
  root.appendChild(section);
  return section;
};

// Radio buttons; onChange(value) when one is picked. Returns the fieldset.
EccoViews.radios = function (name, legend, options, checked, onChange) {
  var group = EccoViews.el("fieldset", {class: name}, [EccoViews.el("legend", {}, [legend])]);
  var id = name + "-" + Math.random().toString(36).slice(2, 8);
  options.forEach(function (option) {
    var input = EccoViews.el("input", {type: "radio", name: id, value: option.value});
    input.checked = option.value === checked;
    input.addEventListener("change", function () {
      if (input.checked) onChange(option.value);
    });
    group.appendChild(EccoViews.el("label", {}, [input, " " + option.label]));
  });
  return group;
};

// The text of a token id from the reply's internals (token_texts), or "#id".
EccoViews.idText = function (data, id) {
  var texts = (data.internals && data.internals.token_texts) || {};
  return Object.prototype.hasOwnProperty.call(texts, String(id)) ? texts[String(id)] : null;
};
EccoViews.idLabel = function (data, id) {
  var text = EccoViews.idText(data, id);
  return text === null ? "#" + id : EccoViews.quoted(text);
};
