// The live page of `ecco ui`: the form becomes an ExplainRequest (proto3 JSON) posted to /api/explain on
// the page's own server, whose reply is JSON lines: {"token"}, then {"row"}, then {"views"} (or {"error"}).
// Tokens and rows are drawn as they arrive; the views of the finished explanation are EccoViews.show's.
"use strict";

(function () {
  var V = EccoViews;
  var $ = function (id) {
    return document.getElementById(id);
  };

  // ---- the form -> an ExplainRequest ----

  function number(id, integer) {
    var text = $(id).value.trim();
    if (text === "") return undefined;
    return integer ? parseInt(text, 10) : Number(text);
  }

  function put(object, key, value) {
    if (value !== undefined && value !== "" && value !== false) object[key] = value;
  }

  function checked(name) {
    return Array.prototype.map.call(document.querySelectorAll("input[name=" + name + "]:checked"), function (box) {
      return box.value;
    });
  }

  function turns() {
    return Array.prototype.map.call(document.querySelectorAll("#turns .turn"), function (turn) {
      return {role: turn.querySelector("select").value, content: turn.querySelector("textarea").value};
    });
  }

  function request() {
    var body = {};
    if (document.querySelector("input[name=input]:checked").value === "chat") body.messages = turns();
    else body.prompt = $("prompt").value;
    put(body, "continuation", $("continuation").value);
    var generation = {};
    put(generation, "max_new_tokens", number("max-new-tokens", true));
    put(generation, "do_sample", $("do-sample").checked);
    put(generation, "temperature", number("temperature"));
    put(generation, "top_p", number("top-p"));
    put(generation, "seed", number("seed", true));
    var attribution = {};
    var methods = checked("method");
    if (methods.length) attribution.methods = methods;
    else attribution.skip = true;
    put(attribution, "target", $("target").value);
    put(attribution, "contrast_token", $("contrast").value);
    put(attribution, "aggregation", $("aggregation").value);
    put(attribution, "baseline", $("baseline").value);
    put(attribution, "n_steps", number("n-steps", true));
    put(attribution, "integration", $("integration").value);
    var internals = {};
    put(internals, "layer_predictions", $("layer-predictions").checked);
    put(internals, "top_k", number("lens-top-k", true));
    put(internals, "token_rankings", $("rankings").checked);
    var watch = $("watch").value.split("\n").filter(function (line) {
      return line !== "";
    });
    if (watch.length) internals.watch = watch.map(function (text) {
      return {text: text};
    });
    put(internals, "activations", $("activations").checked);
    put(internals, "activation_top_k", number("activation-top-k", true));
    put(internals, "nmf_components", number("nmf", true));
    var similarity = checked("similarity");
    if (similarity.length) internals.similarity = similarity;
    put(body, "generation", Object.keys(generation).length ? generation : undefined);
    put(body, "attribution", attribution);
    put(body, "internals", Object.keys(internals).length ? internals : undefined);
    put(body, "float16", $("float16").checked);
    return body;
  }

  function addTurn(role, content) {
    var select = V.el("select", {"aria-label": "role"}, ["system", "user", "assistant"].map(function (name) {
      return V.el("option", {value: name}, [name]);
    }));
    select.value = role;
    var text = V.el("textarea", {rows: "2", "aria-label": "content"}, []);
    text.value = content;
    var remove = V.el("button", {type: "button", "aria-label": "remove this turn"}, ["\u00d7"]);
    var turn = V.el("div", {class: "turn"}, [select, text, remove]);
    remove.addEventListener("click", function () {
      turn.remove();
    });
    $("turns").appendChild(turn);
  }

  // ---- the stream -> the page ----

  function Run() {
    this.tokens = {}; // absolute position -> text of the generated tokens seen
    this.nTokens = 0;
    this.nRows = 0;
    this.promptLength = null;
    this.started = performance.now();
  }

  Run.prototype.status = function (state, text) {
    $("live").setAttribute("data-state", state);
    $("status").textContent = text;
  };

  Run.prototype.progress = function () {
    this.status("streaming", "streaming\u2026 " + this.nTokens + " tokens, " + this.nRows + " attribution rows");
  };

  Run.prototype.token = function (t) {
    if (this.promptLength === null) this.promptLength = t.position - t.index;
    this.tokens[t.position] = t.text;
    var span = V.tokenSpan(t, t.position, "generated");
    span.title = V.quoted(t.text) + " at position " + t.position + " (token id " + t.id + ")";
    $("live-tokens").appendChild(span);
    this.nTokens += 1;
    this.progress();
  };

  Run.prototype.sourceName = function (position) {
    return Object.prototype.hasOwnProperty.call(this.tokens, position)
      ? V.quoted(this.tokens[position])
      : "prompt #" + position;
  };

  // One row: a strip with a pixel per earlier position (colored on the row's own scale) and its top sources.
  Run.prototype.row = function (r) {
    var scale = V.maxAbs([r.scores]);
    var signed = r.scores.some(function (v) {
      return v !== null && v < 0;
    });
    var strip = V.el("canvas", {class: "strip", width: String(Math.max(1, r.scores.length)), height: "1"}, []);
    strip.style.width = Math.min(600, 6 * r.scores.length) + "px"; // positions line up from row to row
    var context = strip.getContext("2d");
    r.scores.forEach(function (value, position) {
      var shade = V.shade(value, scale, signed);
      context.fillStyle = shade ? shade.css : "#fff";
      context.fillRect(position, 0, 1, 1);
    });
    var order = r.scores
      .map(function (value, position) {
        return {value: value, position: position};
      })
      .filter(function (s) {
        return s.value !== null;
      })
      .sort(function (a, b) {
        return Math.abs(b.value) - Math.abs(a.value);
      })
      .slice(0, 5);
    var top = V.el("span", {class: "top"}, order.map(function (s) {
      return V.el("span", {class: "source", "data-pos": s.position, "data-score": s.value}, [
        this.sourceName(s.position) + " " + V.fmt(s.value),
      ]);
    }, this));
    var facts = "target " + V.fmt(r.target_score);
    if (r.convergence_delta !== null) facts += ", IG delta " + V.fmt(r.convergence_delta);
    $("live-rows").appendChild(
      V.el("div", {class: "live-row", "data-method": r.method, "data-target": r.target_position,
        "data-target-score": r.target_score}, [
        V.el("span", {class: "label"}, [r.method + " @ " + r.target_position + " " + this.sourceName(r.target_position)]),
        strip,
        V.el("span", {class: "facts"}, [facts]),
        top,
      ])
    );
    this.nRows += 1;
    this.progress();
  };

  // Once the prompt's tokens are known (the summary), the rows' top sources are named by their text.
  Run.prototype.nameSources = function (data) {
    Array.prototype.forEach.call(document.querySelectorAll("#live-rows .source"), function (span) {
      var token = data.tokens[Number(span.getAttribute("data-pos"))];
      if (token) span.textContent = V.quoted(token.text) + " " + V.fmt(Number(span.getAttribute("data-score")));
    });
  };

  Run.prototype.views = function (data) {
    this.nameSources(data);
    var root = V.el("div", {class: "ecco-view", id: "ecco-live-view"}, []);
    $("views").textContent = "";
    $("views").appendChild(root);
    V.show(root, data);
    var seconds = ((performance.now() - this.started) / 1000).toFixed(1);
    this.status("done", "done in " + seconds + " s: " + this.nTokens + " tokens, " + this.nRows +
      " attribution rows. Explore the explanation below.");
  };

  Run.prototype.fail = function (error) {
    var box = $("error");
    box.textContent = error.status + " " + error.code + ": " + error.message;
    box.hidden = false;
    this.status("error", "the request failed (below).");
  };

  Run.prototype.line = function (text) {
    if (text.trim() === "") return;
    var item = JSON.parse(text);
    if (item.token) this.token(item.token);
    else if (item.row) this.row(item.row);
    else if (item.views) this.views(item.views);
    else if (item.error) this.fail(item.error);
  };

  // Read the reply's JSON lines as they arrive (a line may span chunks).
  function readLines(response, run) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var pending = "";
    function next() {
      return reader.read().then(function (chunk) {
        if (chunk.done) {
          run.line(pending + decoder.decode());
          return;
        }
        pending += decoder.decode(chunk.value, {stream: true});
        var lines = pending.split("\n");
        pending = lines.pop();
        lines.forEach(run.line, run);
        return next();
      });
    }
    return next();
  }

  var controller = null;

  function busy(on) {
    $("explain").disabled = on;
    $("stop").disabled = !on;
  }

  function explain(event) {
    event.preventDefault();
    if (controller) return;
    $("live-tokens").textContent = "";
    $("live-rows").textContent = "";
    $("views").textContent = "";
    $("error").hidden = true;
    var run = new Run();
    run.status("streaming", "sent; waiting for the first token\u2026");
    controller = new AbortController();
    busy(true);
    fetch("/api/explain", {
      method: "POST",
      headers: {"content-type": "application/json"},
      body: JSON.stringify(request()),
      signal: controller.signal,
    })
      .then(function (response) {
        if (response.ok) return readLines(response, run);
        return response.text().then(function (text) {
          var error;
          try {
            error = JSON.parse(text);
          } catch (e) {
            error = {status: response.status, code: "", message: text};
          }
          run.fail(error);
        });
      })
      .catch(function (error) {
        if (error.name === "AbortError") run.status("stopped", "stopped.");
        else run.fail({status: "", code: "", message: "ecco ui did not answer: " + error.message});
      })
      .finally(function () {
        controller = null;
        busy(false);
      });
  }

  function start() {
    addTurn("user", "");
    $("request").addEventListener("submit", explain);
    $("stop").addEventListener("click", function () {
      if (controller) controller.abort();
    });
    $("add-turn").addEventListener("click", function () {
      addTurn("user", "");
    });
    Array.prototype.forEach.call(document.querySelectorAll("input[name=input]"), function (radio) {
      radio.addEventListener("change", function () {
        var chat = radio.value === "chat" && radio.checked;
        if (!radio.checked) return;
        $("chat-input").hidden = !chat;
        $("prompt-input").hidden = chat;
      });
    });
    document.body.setAttribute("data-ready", "true");
  }

  start();
})();
