// The dashboard's action forms (templates/_run_actions.html, _bulk_actions.html): each
// asks for confirmation in the page's <dialog> before it is posted. A bulk form first asks
// the server how many runs its filter selects now, shows that count, and posts it as
// "expected" (the server refuses if the selection changed meanwhile). Text is only ever
// set with textContent: ids and names from storage are never parsed as HTML.
(function () {
  "use strict";

  function dialogFor(form) {
    var section = form.closest(".run-actions, .bulk-actions");
    return section ? section.querySelector("dialog.confirm-dialog") : null;
  }

  function fieldValue(form, name) {
    var field = form.elements.namedItem(name);
    return field && "value" in field ? String(field.value) : "";
  }

  function ask(form, text, allowed) {
    var dialog = dialogFor(form);
    if (!dialog || typeof dialog.showModal !== "function") {
      if (allowed && window.confirm(text)) form.submit();
      return;
    }
    dialog.querySelector(".confirm-text").textContent = text;
    dialog.querySelector(".confirm-yes").disabled = !allowed;
    dialog.returnValue = "";
    dialog.onclose = function () {
      dialog.onclose = null;
      if (dialog.returnValue === "yes" && allowed) form.submit();  // submit(): no new submit event
    };
    dialog.showModal();
  }

  function confirmOne(form) {
    // One pass over the template (ours): what the run and the user wrote is never read for
    // placeholders, and a function replacement takes "$&" and the like as they are.
    var values = { run: form.dataset.run || "", step: fieldValue(form, "step"), signal: fieldValue(form, "signal") };
    var text = form.dataset.confirm.replace(/\{(run|step|signal)\}/g, function (_, key) {
      return values[key];
    });
    var payload = form.elements.namedItem("payload");
    if (payload && payload.value.trim()) {
      try {
        JSON.parse(payload.value);
      } catch (err) {
        ask(form, "The payload is not valid JSON: " + err.message, false);
        return;
      }
    }
    ask(form, text, true);
  }

  function confirmBulk(form) {
    var action = form.dataset.bulk;
    var filter = form.dataset.filter || "";
    fetch("/actions/selection" + (filter ? "?" + filter : ""), { credentials: "same-origin" })
      .then(function (response) { return response.json(); })
      .then(function (body) {
        if (body.error) {
          ask(form, body.error, false);
          return;
        }
        var count = body[action];
        form.elements.namedItem("expected").value = String(count);
        form.elements.namedItem("selection").value = body[action + "_selection"] || "";
        if (count === 0) {
          ask(form, "The filter (" + body.filter + ") selects no run to " + action + ".", false);
          return;
        }
        var verb = action === "retry" ? "Retry" : "Cancel";
        ask(form, verb + " " + count + " run" + (count === 1 ? "" : "s") + " (" + body.filter + ")?", true);
      })
      .catch(function (err) { ask(form, "Could not count the runs: " + err, false); });
  }

  // A live page re-renders the run's part of it when the run changes (htmx, out of band).
  // An action form the user is filling in, or whose confirmation is open, is kept as it is
  // through such a swap (htmx's hx-preserve, set for that one swap); an untouched one is
  // re-rendered, so that it offers what the run allows now.
  function inUse(section) {
    if (section.querySelector("dialog[open]")) return true;
    var active = document.activeElement;
    if (active && active !== document.body && section.contains(active)) return true;
    var fields = section.querySelectorAll("input, textarea, select");
    for (var i = 0; i < fields.length; i++) {
      var field = fields[i];
      if (field.type === "hidden") continue;
      if (field.tagName === "SELECT") {
        for (var j = 0; j < field.options.length; j++) {
          if (field.options[j].selected !== field.options[j].defaultSelected) return true;
        }
      } else if (field.value !== field.defaultValue) {
        return true;
      }
    }
    return false;
  }

  var kept = 0;
  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var target = event.detail.target;
    var fragment = event.detail.fragment;
    if (!target || !fragment || !fragment.querySelectorAll) return;
    var fresh = fragment.querySelectorAll("section.run-actions");
    target.querySelectorAll("section.run-actions").forEach(function (old) {
      if (!inUse(old)) return;
      for (var i = 0; i < fresh.length; i++) {
        var next = fresh[i];
        if (next.dataset.run === old.dataset.run && next.dataset.only === old.dataset.only) {
          var id = "run-actions-kept-" + ++kept;
          old.id = next.id = id;
          old.setAttribute("hx-preserve", "true");
          next.setAttribute("hx-preserve", "true");
          return;
        }
      }
    });
  });
  document.addEventListener("htmx:oobAfterSwap", function () {
    document.querySelectorAll("section.run-actions[hx-preserve]").forEach(function (section) {
      section.removeAttribute("hx-preserve");
      section.removeAttribute("id");
    });
  });
  // A runs table swapped while a bulk confirmation is open would take the dialog away.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    if (target && target.querySelector && target.querySelector(".bulk-actions dialog[open]")) {
      event.detail.shouldSwap = false;
    }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    if (form.dataset.bulk) {
      event.preventDefault();
      confirmBulk(form);
    } else if (form.dataset.confirm) {
      event.preventDefault();
      confirmOne(form);
    }
  });
})();
