// orch ui: keeps the page live. The server renders every part (escaped there); this file only
// swaps a part in when the event stream says something changed, and keeps the forms' inputs.
// The access token rides in the URL (the event stream) or an X-Orch-Token header (fetches): no cookie.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var badge = document.getElementById("live-state");
  var page = document.body.getAttribute("data-page");
  var task = document.body.getAttribute("data-task");
  var meta = document.querySelector("meta[name=token]");
  var token = meta ? meta.getAttribute("content") : "";
  if (!live || (page !== "main" && page !== "task")) { return; }
  var part = page === "main" ? "/part/main" : "/part/task/" + encodeURIComponent(task);
  var busy = false;
  var again = false;
  var edited = null;  // the text field the person typed in, until they leave it
  var loaded = Date.now();  // the answer to an action (#flash) stays 10 s, then goes with the next update

  document.addEventListener("input", function (e) {
    var el = e.target;
    if (el && (el.tagName === "TEXTAREA" || (el.tagName === "INPUT" && el.type !== "hidden"))) { edited = el; }
  });
  document.addEventListener("focusout", function (e) { if (e.target === edited && !edited.value) { edited = null; } });

  function typing() {
    // Only a text field the person changed and still has focus holds updates (a <select> never does).
    return edited !== null && document.activeElement === edited && edited.value !== "";
  }

  function get(path) {
    return fetch(path, { cache: "no-store", headers: { "X-Orch-Token": token } })
      .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.text(); });
  }

  function done() {
    document.body.setAttribute("data-version", String(Number(document.body.getAttribute("data-version") || 0) + 1));
    var log = document.getElementById("log-text");
    if (log) { log.scrollTop = log.scrollHeight; }
  }

  function refresh() {
    if (busy) { again = true; return; }
    if (typing()) { again = true; setTimeout(refresh, 1000); return; }
    busy = true;
    get(part)
      .then(function (html) {
        var flash = Date.now() - loaded < 10000 ? document.getElementById("flash") : null;
        live.innerHTML = html;  // server-rendered, every value escaped there
        if (flash) { live.insertBefore(flash, live.firstChild); }
        edited = null;
        done();
      })
      .catch(function () { if (badge) { badge.textContent = "offline"; } })
      .then(function () { busy = false; if (again) { again = false; refresh(); } });
  }

  function refreshLog() {
    if (busy) { again = true; return; }  // a whole refresh under way brings the log too
    get("/part/log/" + encodeURIComponent(task))
      .then(function (html) {
        var old = document.getElementById("log");
        if (!old) { return; }
        var box = document.createElement("div");
        box.innerHTML = html;  // server-rendered, escaped there
        if (box.firstElementChild) { old.replaceWith(box.firstElementChild); }
        done();
      })
      .catch(function () { if (badge) { badge.textContent = "offline"; } });
  }

  var source = new EventSource("/events?token=" + encodeURIComponent(token));
  var lost = false;
  source.addEventListener("hello", function () {
    if (badge) { badge.textContent = "live"; badge.className = "live on"; }
    document.body.setAttribute("data-live", "1");
    if (lost) { lost = false; refresh(); }  // back after a break: what changed meanwhile
  });
  source.addEventListener("state", refresh);
  source.addEventListener("log", function (e) {
    if (page !== "task") { return; }
    try { if (JSON.parse(e.data).indexOf(task) >= 0) { refreshLog(); } } catch (err) { refreshLog(); }
  });
  source.onerror = function () {
    lost = true;
    if (badge) { badge.textContent = "reconnecting"; badge.className = "live"; }
  };
  var log = document.getElementById("log-text");
  if (log) { log.scrollTop = log.scrollHeight; }
})();
