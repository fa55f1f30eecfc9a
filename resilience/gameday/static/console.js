// The game-day console. State arrives over Server-Sent Events (/api/events): "state" at
// every change, "live" every second (numbers and server-drawn SVG charts). Every action is
// a POST to the JSON API; the session cookie set with the page carries the token. All text
// from the session is set with textContent; only the server's own SVG goes in as markup.
"use strict";

(function () {
  var me = JSON.parse(localStorage.getItem("gameday-me") || "null");
  var catalog = null;
  var lastState = null;

  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function fmtT(t) { return "t=" + Number(t).toFixed(1) + "s"; }
  function ms(v) { return v === null || v === undefined ? "-" : Math.round(v * 1000) + " ms"; }
  function pct(v) { return v === null || v === undefined ? "-" : (v * 100).toFixed(1) + " %"; }

  if (window.location.search.indexOf("token=") >= 0) {
    // The cookie holds the token now; keep it out of the address bar and the history.
    window.history.replaceState(null, "", "/");
  }

  function say(text, isError) {
    var box = $("message");
    box.textContent = text;
    box.hidden = !text;
    box.style.background = isError ? "#fee2e2" : "";
  }

  function post(path, body) {
    return fetch(path, {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify(body || {}),
      credentials: "same-origin"
    }).then(function (r) {
      return r.json().then(function (data) {
        if (!r.ok) { throw new Error(data.error || ("HTTP " + r.status)); }
        say("");
        return data;
      });
    }).catch(function (err) { say(String(err.message || err), true); throw err; });
  }

  function who() { return me ? me.name : ""; }

  function showMe() {
    $("me").textContent = me ? ("You are " + me.name + " (" + me.role + ")") : "Join to write notes under your name.";
  }

  // -- forms --------------------------------------------------------------------------

  $("join-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var body = {name: $("join-name").value, role: $("join-role").value};
    post("/api/join", body).then(function (person) {
      me = {name: person.name, role: person.role};
      localStorage.setItem("gameday-me", JSON.stringify(me));
      showMe();
    });
  });

  $("note-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    post("/api/notes", {kind: $("note-kind").value, text: $("note-text").value, author: who()})
      .then(function () { $("note-text").value = ""; });
  });

  $("heal-all").addEventListener("click", function () { post("/api/heal-all", {by: who()}); });

  $("end-btn").addEventListener("click", function () {
    if (!window.confirm("End the session? Every fault is healed, the load stops and the report is written.")) return;
    $("end-btn").disabled = true;
    post("/api/end", {by: who() || "the console"});
  });

  $("custom-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var attrs = {};
    $("custom-attrs").value.split(/[\s,]+/).forEach(function (pair) {
      if (!pair) return;
      var kv = pair.split("=");
      var v = kv.slice(1).join("=");
      attrs[kv[0]] = /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v;
    });
    var body = {proxy: $("custom-proxy").value, type: $("custom-type").value, attributes: attrs, by: who()};
    if ($("custom-duration").value) body.duration = $("custom-duration").value;
    post("/api/faults", body);
  });

  $("custom-type").addEventListener("change", showTypeHelp);
  function showTypeHelp() {
    if (!catalog) return;
    var t = catalog.types[$("custom-type").value];
    if (!t) return;
    var parts = t.attributes.map(function (a) {
      return a.name + (a.required ? "*" : "=" + a.default) + " (" + a.unit + ")";
    });
    $("custom-help").textContent = t.description + (parts.length ? " Attributes: " + parts.join(", ") : "");
  }

  $("load-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var body = {};
    if (lastState && lastState.load && lastState.load.model === "open") {
      body.rps = $("load-rps").value;
    } else {
      body.users = $("load-users").value;
      if ($("load-spawn").value) body.spawn_rate = $("load-spawn").value;
    }
    post("/api/load", body);
  });

  $("halt-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var metric = $("halt-metric").value;
    var target = $("halt-endpoint").value.trim();
    var body = {expect: $("halt-expect").value};
    if ($("halt-for").value) body["for"] = $("halt-for").value;
    if (metric === "promql") { body.promql = target; } else {
      body.load = metric;
      if (target) body.endpoint = target;
    }
    post("/api/halts", body);
  });

  $("step-next").addEventListener("click", function () { post("/api/steps/next", {}); });
  $("step-done").addEventListener("click", function () { post("/api/steps/done", {}); });

  // -- rendering ----------------------------------------------------------------------

  function renderCatalog() {
    var box = $("named-faults");
    box.textContent = "";
    Object.keys(catalog.named).forEach(function (name) {
      var b = el("button", "", name);
      b.type = "button";
      b.dataset.name = name;
      b.title = catalog.named[name].join("; ");
      b.addEventListener("click", function () { post("/api/faults", {name: name, by: who()}); });
      box.appendChild(b);
    });
    var proxy = $("custom-proxy"), type = $("custom-type");
    catalog.proxies.forEach(function (p) { proxy.appendChild(el("option", "", p)); });
    Object.keys(catalog.types).forEach(function (t) { type.appendChild(el("option", "", t)); });
    showTypeHelp();
  }

  function renderState(s) {
    lastState = s;
    $("session-name").textContent = s.name;
    if (s.load) {
      var open = s.load.model === "open";
      $("load-level").textContent = open ? (s.load.rps + " req/s") : (s.load.users + " users");
      $("rps-box").hidden = !open;
      $("users-box").hidden = open;
      $("spawn-box").hidden = open;
      if (document.activeElement !== $("load-users") && !open) $("load-users").placeholder = s.load.users;
      if (!open) $("load-spawn").placeholder = s.load.spawn_rate;
      if (open) $("load-rps").placeholder = s.load.rps;
    }
    var people = $("people");
    people.textContent = "";
    (s.people || []).forEach(function (p) { people.appendChild(el("li", "", p.name + " — " + p.role)); });

    var notes = $("notes");
    notes.textContent = "";
    (s.notes || []).slice().reverse().forEach(function (n) {
      var li = el("li");
      li.dataset.kind = n.kind;
      li.appendChild(el("span", "t", fmtT(n.t)));
      li.appendChild(el("span", "kind", n.kind));
      li.appendChild(el("span", "text", n.text));
      li.appendChild(el("span", "muted", " — " + n.author));
      notes.appendChild(li);
    });

    var tl = $("timeline");
    tl.textContent = "";
    (s.timeline || []).slice().reverse().forEach(function (e) {
      var li = el("li");
      li.dataset.kind = e.kind;
      li.appendChild(el("span", "t", fmtT(e.t)));
      li.appendChild(el("span", "kind kind-" + e.kind, e.kind));
      li.appendChild(el("span", "text", e.text));
      tl.appendChild(li);
    });

    var halts = $("halts");
    halts.textContent = "";
    (s.halts || []).forEach(function (h) {
      var li = el("li", "halt-" + h.state);
      li.textContent = h.name + ": " + h.watch + " must hold " + h.expect + " (for " + h.for + " s) — " + h.state + (h.reason ? ": " + h.reason : "");
      halts.appendChild(li);
    });

    var steps = $("steps");
    steps.textContent = "";
    var planSteps = (s.plan && s.plan.steps) || [];
    (s.steps || []).forEach(function (st, i) {
      var info = planSteps[i] || {};
      var li = el("li", "step-" + st.status);
      li.appendChild(el("div", "", st.name + " [" + st.status + (st.runs.length > 1 ? ", run " + st.runs.length : "") + "]"));
      if (info.hypothesis) li.appendChild(el("div", "hyp", "Hypothesis: " + info.hypothesis));
      if (info.faults && info.faults.length) li.appendChild(el("div", "muted", "Faults: " + info.faults.join("; ") + (info.duration ? " for " + info.duration + " s" : "")));
      if (info.watch && info.watch.length) li.appendChild(el("div", "muted", "Watch: " + info.watch.join(", ")));
      var row = el("div", "row");
      var start = el("button", "secondary", st.runs.length ? "Repeat" : "Start");
      start.addEventListener("click", function () { post("/api/steps/" + i + "/start", {}); });
      var skip = el("button", "secondary", "Skip");
      skip.addEventListener("click", function () { post("/api/steps/" + i + "/skip", {}); });
      row.appendChild(start); row.appendChild(skip);
      li.appendChild(row);
      steps.appendChild(li);
    });
    renderActive(s.active_faults || []);
    if (s.ended) { ended(); }
  }

  function renderActive(active) {
    var box = $("active-faults");
    box.textContent = "";
    if (!active.length) { box.appendChild(el("li", "muted", "none")); return; }
    active.forEach(function (f) {
      var li = el("li");
      li.dataset.id = f.index;
      li.appendChild(el("span", "", "#" + f.index + " " + f.type + " on " + f.proxy + " — " + Math.round(f.age) + " s"));
      var b = el("button", "secondary heal", "Heal");
      b.dataset.id = f.index;
      b.addEventListener("click", function () { post("/api/faults/" + f.index + "/heal", {by: who()}); });
      li.appendChild(b);
      box.appendChild(li);
    });
  }

  function renderLive(v) {
    if (!v || v.t === undefined) return;
    $("clock").textContent = "t = " + Math.floor(v.t) + " s";
    var body = $("live-table").tBodies[0];
    body.textContent = "";
    v.table.forEach(function (row) {
      var tr = el("tr");
      tr.dataset.endpoint = row.endpoint;
      tr.appendChild(el("td", "", row.endpoint));
      tr.appendChild(el("td", "rps", row.rps.toFixed(1)));
      tr.appendChild(el("td", "", ms(row.p50)));
      tr.appendChild(el("td", "", ms(row.p95)));
      tr.appendChild(el("td", "", ms(row.p99)));
      var err = el("td", "err" + (row.error_rate > 0.01 ? " bad" : ""), pct(row.error_rate));
      err.dataset.value = row.error_rate === null ? "" : row.error_rate;
      tr.appendChild(err);
      body.appendChild(tr);
    });
    ["rps", "p95", "errors"].forEach(function (name) {
      // The SVG is drawn and escaped by the server (resilience.report.svg).
      $("chart-" + name + "-box").innerHTML = v.charts[name];
    });
    renderActive(v.active_faults || []);
  }

  function ended() {
    var box = $("ended");
    box.hidden = false;
    box.textContent = "The session has ended: every fault was healed and the report was written.";
    ["heal-all", "end-btn", "note-btn", "join-btn", "load-btn", "custom-btn", "halt-btn", "step-next", "step-done"].forEach(function (id) { $(id).disabled = true; });
  }

  // -- the stream ---------------------------------------------------------------------

  showMe();
  fetch("/api/catalog", {credentials: "same-origin"}).then(function (r) { return r.json(); })
    .then(function (c) { catalog = c; renderCatalog(); });

  var source = new EventSource("/api/events");
  source.addEventListener("open", function () { $("connection").textContent = "live"; });
  source.addEventListener("error", function () { $("connection").textContent = "reconnecting…"; });
  source.addEventListener("state", function (ev) { renderState(JSON.parse(ev.data)); });
  source.addEventListener("live", function (ev) { renderLive(JSON.parse(ev.data)); });
  source.addEventListener("ended", function () { ended(); source.close(); $("connection").textContent = "ended"; });
})();
