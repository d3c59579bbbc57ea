// flux dev: the run page's replay control and step selection.
// Everything else is htmx attributes; this file holds the little state htmx
// cannot: where the replay slider is, and whether it follows the run live.
(function () {
  "use strict";

  function byId(id) {
    return document.getElementById(id);
  }

  function refresh(eventName) {
    ["timeline", "step-detail"].forEach(function (id) {
      var el = byId(id);
      if (el && window.htmx) window.htmx.trigger(el, eventName);
    });
  }

  function moveTo(value) {
    var slider = byId("replay-slider");
    if (!slider) return;
    var max = Number(slider.max);
    value = Math.max(0, Math.min(max, value));
    slider.value = String(value);
    byId("replay-live-field").value = value >= max ? "1" : "0";
    document.body.classList.toggle("replaying", value < max);
    refresh("replay");
  }

  function selectStep(name) {
    byId("step-field").value = name;
    document.querySelectorAll("#timeline .trow.step").forEach(function (row) {
      row.classList.toggle("selected", !row.dataset.compensation && row.dataset.step === name);
    });
    var detail = byId("step-detail");
    if (detail && window.htmx) window.htmx.trigger(detail, "select-step");
  }

  document.addEventListener("input", function (event) {
    if (event.target && event.target.id === "replay-slider") moveTo(Number(event.target.value));
  });

  document.addEventListener("click", function (event) {
    var el = event.target.closest && event.target.closest("button, a[data-step-select]");
    if (!el) return;
    var slider = byId("replay-slider");
    if (el.id === "replay-prev" && slider) moveTo(Number(slider.value) - 1);
    else if (el.id === "replay-next" && slider) moveTo(Number(slider.value) + 1);
    else if (el.id === "replay-live" && slider) moveTo(Number(slider.max));
    else if (el.hasAttribute("data-step-select")) {
      event.preventDefault();
      selectStep(el.getAttribute("data-step-select"));
    }
  });

  // The topbar's "live" mark follows the server-sent events connection.
  function setLive(state, title) {
    var mark = byId("live");
    if (!mark) return;
    mark.className = "live " + state;
    mark.title = "live updates: " + title;
  }
  document.addEventListener("htmx:sseOpen", function () {
    setLive("on", "connected");
  });
  document.addEventListener("htmx:sseError", function () {
    setLive("off", "disconnected, retrying");
  });

  // A timeline fragment says how many events the run has now: grow the
  // slider, and keep it at the end while following live. While replaying,
  // the user's position stands.
  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail && event.detail.target;
    if (!target || target.id !== "timeline") return;
    var timeline = target.querySelector(".timeline");
    var slider = byId("replay-slider");
    if (!timeline || !slider) return;
    slider.max = timeline.dataset.total;
    if (byId("replay-live-field").value === "1") slider.value = timeline.dataset.total;
  });
})();
