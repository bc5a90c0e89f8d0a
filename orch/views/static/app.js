// orch ui: keeps the page live. The server renders every part (escaped there); this file only
// swaps a part in when the event stream says something changed, and keeps the forms' inputs.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var badge = document.getElementById("live-state");
  var page = document.body.getAttribute("data-page");
  var task = document.body.getAttribute("data-task");
  if (!live || (page !== "main" && page !== "task")) { return; }
  var part = page === "main" ? "/part/main" : "/part/task/" + encodeURIComponent(task);
  var busy = false;
  var again = false;

  function typing() {
    var el = document.activeElement;
    return el && (el.tagName === "INPUT" || el.tagName === "SELECT" || el.tagName === "TEXTAREA") && el.value;
  }

  function refresh() {
    if (busy) { again = true; return; }
    if (typing()) { again = true; setTimeout(refresh, 1000); return; }
    busy = true;
    fetch(part, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.text(); })
      .then(function (html) {
        var flash = document.getElementById("flash");
        live.innerHTML = html;  // server-rendered, every value escaped there
        if (flash && !document.getElementById("flash")) { live.insertBefore(flash, live.firstChild); }
        document.body.setAttribute("data-version", String(Number(document.body.getAttribute("data-version") || 0) + 1));
        var log = document.getElementById("log-text");
        if (log) { log.scrollTop = log.scrollHeight; }
      })
      .catch(function () { if (badge) { badge.textContent = "offline"; } })
      .then(function () { busy = false; if (again) { again = false; refresh(); } });
  }

  var source = new EventSource("/events");
  var lost = false;
  source.addEventListener("hello", function () {
    if (badge) { badge.textContent = "live"; badge.className = "live on"; }
    document.body.setAttribute("data-live", "1");
    if (lost) { lost = false; refresh(); }  // back after a break: what changed meanwhile
  });
  source.addEventListener("state", refresh);
  source.addEventListener("log", function (e) {
    if (page !== "task") { return; }
    try { if (JSON.parse(e.data).indexOf(task) >= 0) { refresh(); } } catch (err) { refresh(); }
  });
  source.onerror = function () {
    lost = true;
    if (badge) { badge.textContent = "reconnecting"; badge.className = "live"; }
  };
  var log = document.getElementById("log-text");
  if (log) { log.scrollTop = log.scrollHeight; }
})();
