// Matrix view: the whole attribution of the chosen method, targets (rows) x sources (columns), on one
// canvas at one pixel per cell scaled up by CSS, so 256 x 2,000 cells cost one image, not 512,000
// elements. Hover a cell for its value; click a row to select that target in the token view.
"use strict";

EccoViews.matrix = function (root, data, state) {
  var V = EccoViews;
  var section = V.section(
    root,
    "matrix",
    "Attribution matrix",
    "Rows: explained (generated) tokens; columns: source tokens 0..n\u22121, left to right. Same method and " +
      "color scale as above. Hover a cell for its value; click a row to select its token."
  );
  var legendHolder = V.el("div", {class: "legend-holder"}, []);
  var frame = V.el("div", {class: "matrix-frame"}, []);
  var labels = V.el("div", {class: "row-labels"}, []);
  var canvas = V.el("canvas", {class: "matrix-canvas", role: "img"}, []);
  var readout = V.el("div", {class: "readout", "aria-live": "polite"}, ["\u00a0"]);
  frame.appendChild(labels);
  frame.appendChild(canvas);
  section.appendChild(legendHolder);
  section.appendChild(frame);
  section.appendChild(readout);
  var cellW = 1;
  var cellH = 1;

  function draw() {
    var a = state.current();
    var rows = a.rows.length;
    var cols = a.n_sources;
    var width = Math.max(320, Math.min(960, root.clientWidth - 180 || 960));
    cellW = Math.max(1, Math.min(24, Math.floor(width / Math.max(1, cols))));
    cellH = Math.max(2, Math.min(20, Math.floor(480 / Math.max(1, rows))));
    canvas.width = Math.max(1, cols);
    canvas.height = Math.max(1, rows);
    canvas.style.width = cols * cellW + "px";
    canvas.style.height = rows * cellH + "px";
    canvas.setAttribute("aria-label", a.method + " attribution matrix, " + rows + " targets by " + cols + " sources");
    canvas.setAttribute("data-method", a.method);
    var context = canvas.getContext("2d");
    var image = context.createImageData(canvas.width, canvas.height);
    var pixels = image.data;
    for (var i = 0; i < rows; i++) {
      var scale = V.rowScale(a, i, state.scale);
      var row = a.rows[i];
      for (var j = 0; j < cols; j++) {
        var k = 4 * (i * cols + j);
        var value = row[j];
        var shade = j < a.targets[i] ? V.shade(value, scale, a.signed) : null;
        var rgb = value !== null && value < 0 && a.signed ? V.NEGATIVE : V.POSITIVE;
        var alpha = shade ? shade.alpha : 0;
        // blended over white, so the canvas shows exactly the token view's colors
        pixels[k] = Math.round(255 + (rgb[0] - 255) * alpha);
        pixels[k + 1] = Math.round(255 + (rgb[1] - 255) * alpha);
        pixels[k + 2] = Math.round(255 + (rgb[2] - 255) * alpha);
        pixels[k + 3] = j < a.targets[i] ? 255 : 40;
      }
    }
    context.putImageData(image, 0, 0);
    labels.textContent = "";
    labels.style.display = cellH >= 12 ? "" : "none";
    if (cellH >= 12)
      a.targets.forEach(function (pos) {
        labels.appendChild(V.el("div", {style: "height:" + cellH + "px;line-height:" + cellH + "px"}, [V.quoted(data.tokens[pos].text)]));
      });
    legendHolder.textContent = "";
    var sentence =
      state.scale === "shared"
        ? V.scaleSentence(a, "shared", V.rowScale(a, 0, "shared"))
        : (a.signed ? "signed scores (blue +, orange \u2212)" : "unsigned scores") +
          "; each row on its own scale: full color = that row's max |score| (hover for values).";
    legendHolder.appendChild(V.legend(a.signed, state.scale === "shared" ? V.rowScale(a, 0, "shared") : 1, sentence));
    if (state.scale !== "shared") legendHolder.querySelectorAll(".end")[1].textContent = "row max";
  }

  function cellAt(event) {
    var box = canvas.getBoundingClientRect();
    var a = state.current();
    var i = Math.floor((event.clientY - box.top) / cellH);
    var j = Math.floor((event.clientX - box.left) / cellW);
    if (i < 0 || j < 0 || i >= a.rows.length || j >= a.n_sources) return null;
    return {i: i, j: j, a: a};
  }

  canvas.addEventListener("mousemove", function (event) {
    var cell = cellAt(event);
    if (!cell) return;
    var pos = cell.a.targets[cell.i];
    var value = cell.a.rows[cell.i][cell.j];
    readout.textContent =
      V.quoted(data.tokens[cell.j].text) + " (" + cell.j + ") \u2192 " + V.quoted(data.tokens[pos].text) + " (" + pos + "): " +
      (cell.j < pos ? V.fmt(value) : "not a source (at or after the target)");
    readout.setAttribute("data-target", pos);
    readout.setAttribute("data-source", cell.j);
    readout.setAttribute("data-value", value === null ? "n/a" : String(value));
  });
  canvas.addEventListener("click", function (event) {
    var cell = cellAt(event);
    if (cell) state.set({selected: cell.a.targets[cell.i]});
  });
  state.on(draw);
  draw();
};
