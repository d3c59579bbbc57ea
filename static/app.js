// flux dev: the run page's replay control, step selection, keys, copy buttons and
// the clocks that tick. Everything else is htmx attributes; this file holds the little
// state htmx cannot: where the replay stands, which step is selected (both also in the
// address, so that reload and Back keep them), and the time that passes.
(function () {
  "use strict";

  function byId(id) {
    return document.getElementById(id);
  }

  function trigger(ids, eventName) {
    ids.forEach(function (id) {
      var el = byId(id);
      if (el && window.htmx) window.htmx.trigger(el, eventName);
    });
  }

  // -- the address: ?step=payment&at=8&idle=compress --------------------------------------
  function stateUrl() {
    var main = document.querySelector("main.run-page[data-base]");
    if (!main) return null;
    var params = new URLSearchParams();
    var step = byId("step-field");
    if (step && step.value) params.set("step", step.value);
    var live = byId("replay-live-field");
    var slider = byId("replay-slider");
    if (live && slider && live.value !== "1") params.set("at", slider.value);
    var idle = byId("idle-toggle");
    if (idle && idle.checked) params.set("idle", "compress");
    var qs = params.toString();
    return main.getAttribute("data-base") + (qs ? "?" + qs : "");
  }

  function remember(push) {
    var url = stateUrl();
    if (!url || url === location.pathname + location.search) return;
    if (push) history.pushState({ fluxRun: true }, "", url);
    else history.replaceState({ fluxRun: true }, "", url);
  }

  // -- replay ---------------------------------------------------------------------------------
  function setPosition(value) {
    var slider = byId("replay-slider");
    if (!slider) return false;
    var max = Number(slider.max);
    value = Math.max(0, Math.min(max, value));
    slider.value = String(value);
    byId("replay-live-field").value = value >= max ? "1" : "0";
    document.body.classList.toggle("replaying", value < max);
    return true;
  }

  function moveTo(value) {
    if (!setPosition(value)) return;
    trigger(["run-live"], "replay");
    remember(false);
  }

  function markSelected(name) {
    document.querySelectorAll("#timeline .trow.step").forEach(function (row) {
      row.classList.toggle("selected", !row.dataset.compensation && row.dataset.step === name);
    });
  }

  function selectStep(name, push) {
    var field = byId("step-field");
    if (!field) return;
    field.value = name;
    markSelected(name);
    trigger(["step-detail"], "select-step");
    remember(push);
  }

  // Back and Forward within the run page: the address says what to show.
  window.addEventListener("popstate", function () {
    if (!byId("replay-form")) return;
    var params = new URLSearchParams(location.search);
    var slider = byId("replay-slider");
    setPosition(params.has("at") ? Number(params.get("at")) : Number(slider.max));
    var idle = byId("idle-toggle");
    if (idle) idle.checked = params.get("idle") === "compress";
    byId("step-field").value = params.get("step") || "";
    markSelected(params.get("step") || "");
    trigger(["run-live"], "replay");
  });

  document.addEventListener("input", function (event) {
    if (event.target && event.target.id === "replay-slider") moveTo(Number(event.target.value));
  });

  document.addEventListener("change", function (event) {
    if (event.target && event.target.id === "idle-toggle") {
      trigger(["run-live"], "replay");
      remember(false);
    }
  });

  // -- copy buttons ---------------------------------------------------------------------------
  function copy(button) {
    var text = button.getAttribute("data-copy") || "";
    function done() {
      button.classList.add("copied");
      button.textContent = "copied";
      setTimeout(function () {
        button.classList.remove("copied");
        button.textContent = "copy";
      }, 1200);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () {});
      return;
    }
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    try {
      document.execCommand("copy");
      done();
    } catch (e) {
      /* nothing to do: the text stays selectable on the page */
    }
    document.body.removeChild(area);
  }

  document.addEventListener("click", function (event) {
    // a step's link in the timeline, or in the header (the failure headline)
    var el = event.target.closest && event.target.closest("button, a[data-step-select], a[data-goto-step]");
    if (!el) return;
    var slider = byId("replay-slider");
    if (el.classList.contains("copy")) copy(el);
    else if (el.id === "replay-prev" && slider) moveTo(Number(slider.value) - 1);
    else if (el.id === "replay-next" && slider) moveTo(Number(slider.value) + 1);
    else if (el.id === "replay-live" && slider) moveTo(Number(slider.max));
    else if (el.hasAttribute("data-step-select") || el.hasAttribute("data-goto-step")) {
      if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
      event.preventDefault();
      selectStep(el.getAttribute("data-step-select") || el.getAttribute("data-goto-step"), true);
    }
  });

  // -- keys: j/k or ↓/↑ between steps, ←/→ through the replay ---------------------------------
  function typing(target) {
    if (!target || !target.tagName) return false;
    var tag = target.tagName.toLowerCase();
    return tag === "input" || tag === "textarea" || tag === "select" || target.isContentEditable;
  }

  function moveStep(delta) {
    var links = Array.prototype.slice.call(document.querySelectorAll("#timeline a[data-step-select]"));
    if (!links.length) return;
    var current = byId("step-field").value;
    var names = links.map(function (a) {
      return a.getAttribute("data-step-select");
    });
    var i = names.indexOf(current);
    var next = i < 0 ? (delta > 0 ? 0 : names.length - 1) : Math.max(0, Math.min(names.length - 1, i + delta));
    selectStep(names[next], false);
    var row = links[next].closest(".trow");
    if (row && row.scrollIntoView) row.scrollIntoView({ block: "nearest" });
  }

  document.addEventListener("keydown", function (event) {
    if (!byId("replay-form") || event.altKey || event.ctrlKey || event.metaKey) return;
    if (typing(event.target)) return; // the slider moves itself with the arrows
    var slider = byId("replay-slider");
    var key = event.key;
    if (key === "j" || key === "ArrowDown") moveStep(1);
    else if (key === "k" || key === "ArrowUp") moveStep(-1);
    else if (key === "ArrowLeft") moveTo(Number(slider.value) - 1);
    else if (key === "ArrowRight") moveTo(Number(slider.value) + 1);
    else return;
    event.preventDefault();
  });

  // -- the clocks: a running run's duration, a sleep's time left, a deadline ---------------------
  function duration(ms) {
    if (!(ms >= 0)) return "—";
    if (ms < 1000) return ms >= 10 ? ms.toFixed(0) + " ms" : ms.toFixed(1) + " ms";
    var s = ms / 1000;
    if (s < 60) return s.toFixed(2) + " s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + " min " + Math.floor(s % 60) + " s";
    return Math.floor(m / 60) + " h " + (m % 60) + " min";
  }

  function span(ms) {
    if (ms < 1000) return Math.round(ms) + " ms";
    if (ms < 60000) return Math.round(ms / 1000) + " s";
    var m = Math.round(ms / 60000);
    if (m < 60) return m + " min";
    var h = Math.floor(m / 60);
    if (h < 48) return h + " h" + (m % 60 ? " " + (m % 60) + " min" : "");
    return Math.floor(h / 24) + " d" + (h % 24 ? " " + (h % 24) + " h" : "");
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-tick-since]").forEach(function (el) {
      el.textContent = duration(now - Number(el.getAttribute("data-tick-since")));
    });
    document.querySelectorAll("[data-countdown]").forEach(function (el) {
      var left = Number(el.getAttribute("data-countdown")) - now;
      if (el.classList.contains("bar")) {
        var label = el.querySelector(".lbl");
        if (!label) return;
        var head = label.textContent.split(" · ")[0];
        label.textContent = head + " · " + (left > 0 ? span(left) + " left" : "due");
      } else {
        el.textContent = left >= 0 ? "in " + span(left) : "passed " + span(-left) + " ago";
      }
    });
  }
  setInterval(tick, 1000);

  // The topbar's live mark is runs.js's (it says "disconnected" in words).

  // A timeline fragment says how many events the run has now: grow the
  // slider, and keep it at the end while following live. While replaying,
  // the user's position stands.
  function timelineSwapped(event) {
    var target = event.detail && event.detail.target;
    if (!target || target.id !== "timeline") return;
    var timeline = target.querySelector(".timeline");
    var slider = byId("replay-slider");
    if (!timeline || !slider) return;
    slider.max = timeline.dataset.total;
    if (byId("replay-live-field").value === "1") slider.value = timeline.dataset.total;
  }
  document.addEventListener("htmx:afterSwap", timelineSwapped);
  document.addEventListener("htmx:oobAfterSwap", timelineSwapped); // the live request's swaps

  // A long run's rows come in chunks as they are scrolled to: an update of the timeline
  // asks for as many as are shown, so that it does not take them away again.
  var counting = false;
  document.addEventListener("htmx:afterSettle", function () {
    if (counting || !byId("rows-field")) return;
    counting = true; // once per frame, however many elements one swap settled
    requestAnimationFrame(function () {
      counting = false;
      byId("rows-field").value = String(document.querySelectorAll("#timeline .trow.step:not([data-compensation])").length);
      markSelected(byId("step-field").value);
    });
  });

  if (byId("replay-live-field") && byId("replay-live-field").value !== "1") {
    document.body.classList.add("replaying");
  }
})();
