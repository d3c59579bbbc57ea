/* flux dev: the run page's graph tab. Draws an SVG from the JSON graph of GET
   /runs/{id}/graph.json (flux/graph.py's shape, each node with its status in the run):
   one row per step of the workflow from the top down, a parallel group's branches and a
   map's handler side by side in a box, a compensation to the right of its step.
   Names are user data: text goes in with textContent and elements with createElementNS,
   never as markup. No library: the CSP allows scripts from this server only. */
(function () {
  "use strict";

  var SVG = "http://www.w3.org/2000/svg";
  var LINE_H = 16, PAD_X = 12, PAD_Y = 9, CHAR_W = 7.1, MIN_W = 100, MAX_W = 320;
  var GAP_X = 28, GAP_Y = 54, UNDO_GAP = 40, BOX_PAD = 14, BOX_TITLE = 24, MARGIN = 18;
  var KINDS = { step: 1, commit: 1, parallel: 1, map: 1, call: 1, each: 1, compensation: 1 };
  var drawn = 0; // the newest request: an older answer that arrives late is dropped

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs || {}).forEach(function (key) {
      node.setAttribute(key, String(attrs[key]));
    });
    if (parent) parent.appendChild(node);
    return node;
  }

  function chars(text) {
    return Array.from(String(text)); // code points: a cut never splits a surrogate pair
  }

  var FONT = '12.5px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
  var ruler = null;

  /* The width a line takes in the SVG's font (a canvas measures it), or an estimate. */
  function textWidth(text, bold) {
    if (ruler === null) {
      var canvas = document.createElement("canvas");
      ruler = (canvas.getContext && canvas.getContext("2d")) || false;
    }
    if (!ruler) return chars(text).length * CHAR_W;
    ruler.font = (bold ? "600 " : "") + FONT;
    return ruler.measureText(String(text)).width;
  }

  function fit(text, width, bold) {
    var cs = chars(text);
    var room = width - 2 * PAD_X;
    if (textWidth(text, bold) <= room) return cs.join("");
    var lo = 0, hi = cs.length; // the longest prefix that fits with its ellipsis
    while (lo < hi) {
      var mid = Math.ceil((lo + hi) / 2);
      if (textWidth(cs.slice(0, mid).join("") + "…", bold) <= room) lo = mid;
      else hi = mid - 1;
    }
    return cs.slice(0, lo).join("") + "…";
  }

  function token(text) {
    return /^[a-z_]+$/.test(String(text)) ? String(text) : "other";
  }

  function itemsLine(items) {
    var parts = [];
    [["completed", "done"], ["failed", "failed"], ["running", "running"], ["compensated", "undone"]].forEach(
      function (pair) {
        if (items[pair[0]]) parts.push(items[pair[0]] + " " + pair[1]);
      }
    );
    return parts.length ? parts.join(" · ") : null;
  }

  function labelOf(node) {
    var lines = (Array.isArray(node.label) && node.label.length ? node.label : [node.name]).map(String);
    if (node.kind === "each" && node.items) {
      var line = itemsLine(node.items);
      if (line) lines = lines.concat([line]);
    }
    return lines;
  }

  function measure(node) {
    var lines = labelOf(node);
    var longest = lines.reduce(function (m, l, i) { return Math.max(m, textWidth(l, i === 0)); }, 0);
    var extra = node.kind === "commit" ? 24 : node.kind === "call" ? 16 : 0;
    var w = Math.min(MAX_W, Math.max(MIN_W, Math.ceil(longest) + 2 * PAD_X + extra));
    return { node: node, lines: lines, w: w, h: lines.length * LINE_H + 2 * PAD_Y };
  }

  /* Rows top-down: each top-level step is a row; a group or a map is a row of its members. */
  function layout(graph) {
    var byId = {}, undoOf = {}, groups = {};
    graph.nodes.forEach(function (n) { byId[n.id] = n; });
    graph.edges.forEach(function (e) { if (e.kind === "compensate" && byId[e.to]) undoOf[e.from] = byId[e.to]; });
    graph.groups.forEach(function (g) { groups[g.name] = g; });

    function unit(n) {
      var u = { box: measure(n), undo: undoOf[n.id] ? measure(undoOf[n.id]) : null };
      u.w = u.box.w + (u.undo ? UNDO_GAP + u.undo.w : 0);
      u.h = Math.max(u.box.h, u.undo ? u.undo.h : 0);
      return u;
    }

    var rows = [];
    graph.nodes.forEach(function (n) {
      if ((n.group !== null && n.group !== undefined) || n.kind === "compensation") return;
      if (n.kind === "parallel" || n.kind === "map") {
        var g = groups[n.name];
        var members = (g ? g.members : []).map(function (id) { return byId[id]; }).filter(function (m) {
          return m && m.kind !== "compensation";
        });
        rows.push({ group: n, title: labelOf(n)[0], units: members.map(unit) });
      } else {
        rows.push({ group: null, units: [unit(n)] });
      }
    });

    var width = 0;
    rows.forEach(function (r) {
      r.inner = r.units.reduce(function (m, u) { return Math.max(m, u.h); }, 0) || 2 * LINE_H;
      r.w = r.units.reduce(function (s, u) { return s + u.w; }, 0) + GAP_X * Math.max(0, r.units.length - 1);
      r.h = r.inner;
      if (r.group) {
        r.w = Math.max(r.w + 2 * BOX_PAD, Math.min(MAX_W * 2, textWidth(r.title, true) + 2 * BOX_PAD));
        r.h = r.inner + BOX_TITLE + BOX_PAD;
      }
      width = Math.max(width, r.w);
    });
    width += 2 * MARGIN;

    var pos = {}, boxes = [], y = MARGIN;
    rows.forEach(function (r) {
      r.x = (width - r.w) / 2;
      r.y = y;
      var used = r.units.reduce(function (s, u) { return s + u.w; }, 0) + GAP_X * Math.max(0, r.units.length - 1);
      var x = r.x + (r.w - used) / 2;
      var top = r.y + (r.group ? BOX_TITLE : 0);
      r.units.forEach(function (u) {
        var b = u.box;
        pos[b.node.id] = { x: x, y: top + (r.inner - b.h) / 2, w: b.w, h: b.h, m: b };
        if (u.undo) {
          var d = u.undo;
          pos[d.node.id] = { x: x + b.w + UNDO_GAP, y: top + (r.inner - d.h) / 2, w: d.w, h: d.h, m: d };
        }
        x += u.w + GAP_X;
      });
      if (r.group) {
        boxes.push(r);
        // edges to a group with no members meet its box
        pos[r.group.id] = { x: r.x, y: r.y, w: r.w, h: r.h, box: true };
      }
      y += r.h + GAP_Y;
    });
    return { pos: pos, boxes: boxes, width: width, height: Math.max(y - GAP_Y + MARGIN, 2 * MARGIN) };
  }

  function tooltip(parent, node) {
    var words = labelOf(node).join("\n") + "\n" + (node.kind || "step") + ", " + (node.status || "pending");
    if (node.child_run) words += "\ncalls run " + node.child_run;
    el("title", {}, parent).textContent = words;
  }

  function drawText(parent, m, p) {
    var text = el("text", { x: p.x + p.w / 2, y: p.y + PAD_Y + LINE_H - 4, "text-anchor": "middle" }, parent);
    m.lines.forEach(function (line, i) {
      var span = el("tspan", { x: p.x + p.w / 2, dy: i === 0 ? 0 : LINE_H }, text);
      span.setAttribute("class", i === 0 ? "gname" : "gsub");
      span.textContent = fit(line, p.w - (m.node.kind === "commit" ? 24 : m.node.kind === "call" ? 16 : 0), i === 0);
    });
  }

  function drawShape(g, node, p) {
    var x = p.x, y = p.y, w = p.w, h = p.h;
    if (node.kind === "commit") {
      var k = Math.min(14, h / 2);
      var pts = [[x + k, y], [x + w - k, y], [x + w, y + h / 2], [x + w - k, y + h], [x + k, y + h], [x, y + h / 2]];
      el("polygon", { "class": "gshape", points: pts.map(function (q) { return q.join(","); }).join(" ") }, g);
    } else if (node.kind === "compensation") {
      el("rect", { "class": "gshape", x: x, y: y, width: w, height: h, rx: h / 2 }, g);
    } else if (node.kind === "each") {
      el("rect", { "class": "gshape gstack", x: x + 6, y: y + 6, width: w, height: h, rx: 8 }, g);
      el("rect", { "class": "gshape gstack", x: x + 3, y: y + 3, width: w, height: h, rx: 8 }, g);
      el("rect", { "class": "gshape", x: x, y: y, width: w, height: h, rx: 8 }, g);
    } else {
      el("rect", { "class": "gshape", x: x, y: y, width: w, height: h, rx: node.kind === "call" ? 2 : 6 }, g);
      if (node.kind === "call") {
        el("line", { "class": "gbar", x1: x + 8, y1: y, x2: x + 8, y2: y + h }, g);
        el("line", { "class": "gbar", x1: x + w - 8, y1: y, x2: x + w - 8, y2: y + h }, g);
      }
    }
  }

  /* Where a node leads: a call to its child's run page, any other node to its step on the
     timeline (a map's handler and a compensation to the step they belong to). */
  function linkOf(node) {
    if (node.kind === "call" && typeof node.child_url === "string" && node.child_url.indexOf("/runs/") === 0) {
      return node.child_url;
    }
    var main = document.querySelector("main.run-page");
    var base = main ? main.getAttribute("data-base") || "" : "";
    if (base.indexOf("/runs/") !== 0) return null;
    var step = node.kind === "each" ? node.group : node.kind === "compensation" ? node.of : node.name;
    return typeof step === "string" ? base + "?" + new URLSearchParams({ step: step }).toString() : null;
  }

  function drawNode(svg, node, p) {
    var parent = svg;
    var href = linkOf(node);
    if (href !== null) parent = el("a", { href: href, "class": "glink" }, svg);
    var g = el("g", {
      "class": "gnode gk-" + (KINDS[node.kind] ? node.kind : "step") + " gs-" + token(node.status || "pending"),
      "data-node-id": node.id,
      "data-kind": node.kind,
      "data-status": node.status || "pending"
    }, parent);
    g.setAttribute("data-step", String(node.name));
    tooltip(g, node);
    drawShape(g, node, p);
    drawText(g, p.m, p);
  }

  function drawEdge(svg, edge, a, b) {
    var d, lx, ly;
    if (edge.kind === "compensate") {
      var y1 = a.y + a.h / 2, y2 = b.y + b.h / 2;
      d = "M" + (a.x + a.w) + " " + y1 + " L" + (b.x - 2) + " " + y2;
      lx = (a.x + a.w + b.x) / 2;
      ly = Math.min(y1, y2) - 9;
    } else {
      var x1 = a.x + a.w / 2, ya = a.y + a.h, x2 = b.x + b.w / 2, yb = b.y - 2;
      var mid = (ya + yb) / 2;
      d = "M" + x1 + " " + ya + " C" + x1 + " " + mid + " " + x2 + " " + mid + " " + x2 + " " + yb;
      lx = (x1 + x2) / 2 + 4;
      ly = mid + 4;
    }
    var kind = edge.kind === "when" || edge.kind === "compensate" ? edge.kind : "next";
    var path = el("path", { d: d, "class": "gedge ge-" + kind, "marker-end": "url(#graph-arrow)" }, svg);
    path.setAttribute("data-from", String(edge.from));
    path.setAttribute("data-to", String(edge.to));
    if (edge.label !== null && edge.label !== undefined && edge.label !== "") {
      var text = el("text", { "class": "gedge-label ge-" + kind, x: lx, y: ly, "text-anchor": "middle" }, svg);
      text.textContent = fit(edge.label, 200, false);
    }
  }

  function draw(canvas, graph) {
    var L = layout(graph);
    var svg = el("svg", {
      "class": "graph-svg", width: L.width, height: L.height,
      viewBox: "0 0 " + L.width + " " + L.height, "data-workflow-graph": ""
    });
    el("title", {}, svg).textContent = "workflow " + String(graph.workflow);
    var marker = el("marker", {
      id: "graph-arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto"
    }, el("defs", {}, svg));
    el("path", { d: "M0 0 L10 5 L0 10 z", "class": "garrow" }, marker);
    var byId = {};
    graph.nodes.forEach(function (n) { byId[n.id] = n; });
    L.boxes.forEach(function (r) {
      var box = el("g", {
        "class": "ggroup gk-" + (r.group.kind === "map" ? "map" : "parallel") + " gs-" + token(r.group.status || "pending"),
        "data-node-id": r.group.id, "data-kind": r.group.kind, "data-status": r.group.status || "pending"
      }, svg);
      box.setAttribute("data-step", String(r.group.name));
      tooltip(box, r.group);
      el("rect", { "class": "gbox", x: r.x, y: r.y, width: r.w, height: r.h, rx: 10 }, box);
    });
    graph.edges.forEach(function (e) {
      var a = L.pos[e.from], b = L.pos[e.to];
      if (a && b) drawEdge(svg, e, a, b);
    });
    L.boxes.forEach(function (r) { // over the edges that cross it, on a halo of the page's colour
      var title = el("text", { "class": "gbox-title", x: r.x + BOX_PAD, y: r.y + 17 }, svg);
      title.textContent = fit(r.title, r.w - 2 * BOX_PAD + 2 * PAD_X, true);
    });
    graph.nodes.forEach(function (n) {
      var p = L.pos[n.id];
      if (p && !p.box) drawNode(svg, n, p);
    });
    while (canvas.firstChild) canvas.removeChild(canvas.firstChild);
    canvas.appendChild(svg);
  }

  function fail(canvas, words) {
    while (canvas.firstChild) canvas.removeChild(canvas.firstChild);
    var p = document.createElement("p");
    p.className = "graph-error";
    p.textContent = words;
    canvas.appendChild(p);
  }

  /* The replay position of the page, so that the graph shows the run where the timeline does. */
  function replayQuery() {
    var form = document.getElementById("replay-form");
    var params = new URLSearchParams();
    if (form) {
      new FormData(form).forEach(function (value, key) {
        if (key === "at" || key === "live" || key === "idle") params.set(key, String(value));
      });
    }
    return params.toString();
  }

  function load() {
    var tab = document.getElementById("graph-tab");
    var panel = document.getElementById("graph-panel");
    if (!tab || !panel || panel.hidden) return;
    var canvas = document.getElementById("graph-canvas");
    var src = tab.getAttribute("data-graph-src") || "";
    if (!canvas || src.indexOf("/runs/") !== 0) return;
    var mine = ++drawn;
    var query = replayQuery();
    fetch(src + (query ? "?" + query : ""), { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (graph) {
        if (mine === drawn) draw(canvas, graph);
      })
      .catch(function (err) {
        if (mine === drawn) fail(canvas, "The graph could not be drawn: " + String(err && err.message));
      });
  }

  function show(which) {
    var panel = document.getElementById("graph-panel");
    var body = document.querySelector(".run-page .run-body");
    if (!panel || !body) return;
    var graph = which === "graph";
    panel.hidden = !graph;
    body.hidden = graph;
    document.querySelectorAll(".run-tabs [data-tab]").forEach(function (a) {
      a.setAttribute("aria-selected", a.getAttribute("data-tab") === which ? "true" : "false");
    });
    var address = new URL(window.location.href); // a reload opens the same tab
    if (graph) address.searchParams.set("tab", "graph");
    else address.searchParams.delete("tab");
    if (address.href !== window.location.href) window.history.replaceState(window.history.state, "", address.href);
    if (graph) {
      var link = document.querySelector('.run-tabs [data-tab="graph"]');
      var url = link ? link.getAttribute("href") : null;
      if (url && window.htmx) {
        window.htmx.ajax("GET", url, { target: "#graph-panel", swap: "innerHTML" });
      }
    }
  }

  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target.closest(".run-tabs [data-tab]") : null;
    if (!target || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
    event.preventDefault();
    show(target.getAttribute("data-tab"));
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.target && event.target.id === "graph-panel") load();
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    // a live update or a replay move redrew the timeline: colour the graph as of the same moment
    var elt = event.detail && event.detail.elt;
    if (elt && elt.id === "run-live") load();
  });
  document.addEventListener("DOMContentLoaded", function () {
    if (new URLSearchParams(window.location.search).get("tab") === "graph") show("graph");
  });
})();
