// flux dev: the keys, the live mark and the runs page's small state.
// Loaded on every page (base.html). What htmx cannot keep lives here: the
// selected row, the time display (remembered in localStorage), the key list.
(function () {
  "use strict";

  var TIME_KEY = "flux.dev.time";
  var MODES = ["relative", "local", "utc"];
  var LABELS = { relative: "times: relative", local: "times: local", utc: "times: UTC" };

  function byId(id) {
    return document.getElementById(id);
  }

  // -- the live mark: in words, not only a colour ---------------------------
  function setLive(state, text) {
    var mark = byId("live");
    if (!mark) return;
    mark.classList.toggle("on", state === "on");
    mark.classList.toggle("off", state === "off");
    mark.textContent = text;
    mark.title = "live updates: " + text;
  }
  document.addEventListener("htmx:sseOpen", function () {
    setLive("on", "live");
  });
  document.addEventListener("htmx:sseError", function () {
    setLive("off", "disconnected — retrying");
  });
  document.addEventListener("htmx:sseClose", function () {
    setLive("off", "disconnected");
  });

  // -- times: relative, local or UTC ----------------------------------------
  function mode() {
    var stored = null;
    try {
      stored = window.localStorage.getItem(TIME_KEY);
    } catch (e) {
      stored = null;
    }
    return MODES.indexOf(stored) >= 0 ? stored : "relative";
  }

  function pad(n, width) {
    var s = String(n);
    while (s.length < (width || 2)) s = "0" + s;
    return s;
  }

  function relative(ms, now) {
    var s = Math.round((now - ms) / 1000);
    var future = s < 0;
    s = Math.abs(s);
    var text;
    if (s < 5) return "just now";
    if (s < 60) text = s + " s";
    else if (s < 3600) text = Math.floor(s / 60) + " min";
    else if (s < 86400) text = Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    else text = Math.floor(s / 86400) + " d";
    return future ? "in " + text : text + " ago";
  }

  function local(d) {
    return (
      d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds())
    );
  }

  function utc(d) {
    return (
      d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " +
      pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds()) + "." +
      pad(d.getUTCMilliseconds(), 3) + "Z"
    );
  }

  function showTimes(root) {
    var m = mode();
    var now = Date.now();
    (root || document).querySelectorAll("time.t[data-ms]").forEach(function (el) {
      var ms = Number(el.dataset.ms);
      var d = new Date(ms);
      if (!isFinite(ms) || isNaN(d.getTime())) return;
      if (!el.title) el.title = utc(d) + " (UTC)";
      el.textContent = m === "relative" ? relative(ms, now) : m === "local" ? local(d) : utc(d);
    });
    var button = byId("time-mode");
    if (button) {
      button.dataset.mode = m;
      button.textContent = LABELS[m];
    }
  }

  function nextMode() {
    var m = MODES[(MODES.indexOf(mode()) + 1) % MODES.length];
    try {
      window.localStorage.setItem(TIME_KEY, m);
    } catch (e) {
      /* private mode: the toggle works for this page only */
    }
    showTimes();
  }
  // A running run's duration, from when it started: rows are cached on the
  // server and carry no clock of their own.
  function duration(ms) {
    if (ms < 1000) return Math.round(ms) + " ms";
    var s = ms / 1000;
    if (s < 60) return s.toFixed(2) + " s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + " min " + Math.floor(s % 60) + " s";
    return Math.floor(m / 60) + " h " + (m % 60) + " min";
  }

  function tick(root) {
    var now = Date.now();
    (root || document).querySelectorAll(".running-for[data-since]").forEach(function (el) {
      var since = Number(el.dataset.since);
      if (isFinite(since) && now >= since) el.textContent = duration(now - since) + "…";
    });
  }

  var ticks = 0;
  window.setInterval(function () {
    tick();
    ticks += 1;
    if (ticks % 15 === 0 && mode() === "relative") showTimes();
  }, 1000);

  // -- the selected run -----------------------------------------------------
  var selected = null; // a run id: survives the table being swapped

  function rows() {
    return Array.prototype.slice.call(document.querySelectorAll("#runs tr.run"));
  }

  function mark() {
    rows().forEach(function (row) {
      var on = row.dataset.runId === selected;
      row.classList.toggle("kb-selected", on);
      if (on) row.setAttribute("aria-selected", "true");
      else row.removeAttribute("aria-selected");
    });
  }

  function move(delta) {
    var all = rows();
    if (!all.length) return;
    var at = -1;
    all.forEach(function (row, i) {
      if (row.dataset.runId === selected) at = i;
    });
    var next = at < 0 ? (delta > 0 ? 0 : all.length - 1) : Math.max(0, Math.min(all.length - 1, at + delta));
    selected = all[next].dataset.runId;
    mark();
    all[next].scrollIntoView({ block: "nearest" });
  }

  function open() {
    var row = rows().filter(function (r) {
      return r.dataset.runId === selected;
    })[0];
    var link = row && row.querySelector("td.id a");
    if (link) window.location.href = link.getAttribute("href");
  }

  // -- the key list ---------------------------------------------------------
  function toggleKeys(show) {
    var keys = byId("keys");
    if (!keys) return;
    keys.hidden = show === undefined ? !keys.hidden : !show;
  }

  function typing(target) {
    if (!target || !target.tagName) return false;
    var tag = target.tagName.toLowerCase();
    return tag === "input" || tag === "textarea" || tag === "select" || target.isContentEditable;
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var key = event.key;
    if (key === "Escape") {
      toggleKeys(false);
      if (typing(event.target)) event.target.blur();
      return;
    }
    if (typing(event.target)) return;
    var onRuns = !!byId("runs");
    if (key === "?") {
      toggleKeys();
    } else if (key === "/") {
      var q = byId("q");
      if (q) {
        q.focus();
        q.select();
      } else {
        window.location.href = "/";
      }
    } else if (key === "t" && byId("time-mode")) {
      nextMode();
    } else if (onRuns && (key === "j" || key === "ArrowDown")) {
      move(1);
    } else if (onRuns && (key === "k" || key === "ArrowUp")) {
      move(-1);
    } else if (onRuns && key === "Enter" && selected && (event.target === document.body || event.target.closest("#runs tr.run"))) {
      open();
    } else {
      return;
    }
    event.preventDefault();
  });

  document.addEventListener("click", function (event) {
    var el = event.target.closest && event.target.closest("#time-mode, #keys-button, a[data-chip]");
    if (!el) {
      if (!event.target.closest || !event.target.closest("#keys")) toggleKeys(false);
      return;
    }
    if (el.id === "time-mode") nextMode();
    else if (el.id === "keys-button") toggleKeys();
    else if (el.hasAttribute("data-chip")) {
      var status = byId("status-filter");
      var form = byId("filters");
      if (!status || !form || !window.htmx) return; // the link's href still works
      event.preventDefault();
      status.value = el.getAttribute("data-chip");
      window.htmx.trigger(form, "submit");
    }
  });

  function afterRunsSwap(target) {
    showTimes(target);
    tick(target);
    mark();
  }

  // -- live updates touch only what changed ----------------------------------
  // Re-parsing and laying out a page of rows costs a browser tens of
  // milliseconds; a live change usually alters one row and the counts. So the
  // fragment is parsed off the document and only differing parts are moved in:
  // rows by their data-v (the server's version of each), the rest by markup.
  function sameShape(a, b) {
    if (a.length !== b.length) return false;
    for (var i = 0; i < a.length; i++) {
      if (a[i].tagName !== b[i].tagName || a[i].id !== b[i].id || a[i].className !== b[i].className) return false;
    }
    return true;
  }

  function patchRows(oldBody, newBody) {
    var have = {};
    Array.prototype.forEach.call(oldBody.children, function (row) {
      have[row.dataset.runId] = row;
    });
    var want = Array.prototype.map.call(newBody.children, function (row) {
      var old = have[row.dataset.runId];
      return old && old.dataset.v === row.dataset.v ? old : row;
    });
    want.forEach(function (row, i) {
      var at = oldBody.children[i];
      if (at !== row) oldBody.insertBefore(row, at || null);
    });
    while (oldBody.children.length > want.length) oldBody.lastElementChild.remove();
  }

  function patch(target, html) {
    var tpl = document.createElement("template");
    tpl.innerHTML = html;
    var fresh = tpl.content;
    if (fresh.querySelector("[hx-swap-oob]")) return false; // let htmx do it all
    var olds = Array.prototype.slice.call(target.children);
    var news = Array.prototype.slice.call(fresh.children);
    if (!sameShape(olds, news)) return false;
    news.forEach(function (node, i) {
      var old = olds[i];
      if (node.tagName === "TABLE") {
        var oldHead = old.tHead, newHead = node.tHead;
        if (oldHead && newHead && oldHead.outerHTML !== newHead.outerHTML) old.replaceChild(newHead, oldHead);
        patchRows(old.tBodies[0], node.tBodies[0]);
      } else if (node.tagName === "INPUT") {
        if (old.value !== node.value) old.value = node.value;
      } else if (old.outerHTML !== node.outerHTML) {
        target.replaceChild(node, old);
        if (window.htmx) window.htmx.process(node);
      }
    });
    return true;
  }

  document.addEventListener("htmx:beforeSwap", function (event) {
    var detail = event.detail;
    var target = detail && detail.target;
    if (!target || target.id !== "runs" || !detail.shouldSwap || detail.isError) return;
    var xhr = detail.xhr;
    if (!xhr || xhr.status !== 200) return;
    if (patch(target, detail.serverResponse)) {
      detail.shouldSwap = false; // htmx then skips the address bar too: keep it in step
      var url = xhr.getResponseHeader("HX-Replace-Url");
      if (url && url !== window.location.pathname + window.location.search) {
        window.history.replaceState(window.history.state, "", url);
      }
      afterRunsSwap(target);
    }
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail && event.detail.target;
    if (target && target.id === "runs") afterRunsSwap(target);
  });
  document.addEventListener("DOMContentLoaded", function () {
    showTimes();
    tick();
  });
})();
