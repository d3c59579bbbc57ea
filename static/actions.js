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
    var text = form.dataset.confirm
      .replace("{step}", fieldValue(form, "step"))
      .replace("{signal}", fieldValue(form, "signal"));
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
        if (count === 0) {
          ask(form, "The filter (" + body.filter + ") selects no run to " + action + ".", false);
          return;
        }
        var verb = action === "retry" ? "Retry" : "Cancel";
        ask(form, verb + " " + count + " run" + (count === 1 ? "" : "s") + " (" + body.filter + ")?", true);
      })
      .catch(function (err) { ask(form, "Could not count the runs: " + err, false); });
  }

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
