// asyncjobs dashboard: confirmations and live updates over the API's
// Server-Sent Events (GET /v1/events). Every page works without this file.
"use strict";
window.__errors = [];
window.__sources = [];
window.addEventListener("error", function (e) {
  window.__errors.push(String(e.message || (e.target && (e.target.src || e.target.href)) || e));
}, true);
(function () {
  var original = console.error;
  console.error = function () {
    window.__errors.push(Array.prototype.join.call(arguments, " "));
    return original.apply(console, arguments);
  };
})();
window.addEventListener("unhandledrejection", function (e) { window.__errors.push(String(e.reason)); });

// a page left open keeps its stream's connection, and browsers allow six
// per server over HTTP/1.1: close streams when the page is hidden for good
// (navigation, back/forward cache) and start afresh when it comes back
window.addEventListener("pagehide", function () {
  window.__sources.forEach(function (s) { s.close(); });
});
window.addEventListener("pageshow", function (e) {
  if (e.persisted) { window.location.reload(); }
});

var FINAL = ["complete", "expired", "terminated", "unreachable", "queue_error"];
var FAILED = ["retry", "expired", "terminated", "unreachable", "queue_error"];

function events(query, onEvent, onOpen) {
  if (!window.EventSource) { return; }
  var source = new EventSource("/v1/events" + (query ? "?" + query : ""));
  window.__sources.push(source);
  // what changed between the page's rendering and the stream's start
  if (onOpen) { source.addEventListener("open", onOpen); }
  source.addEventListener("io.choria.asyncjobs.v1.task_state", function (m) {
    try { onEvent(JSON.parse(m.data)); } catch (err) { window.__errors.push(String(err)); }
  });
}

function setState(el, state) {
  if (!el) { return; }
  el.textContent = state;
  el.className = "badge s-" + state;
}

// forms that ask first: confirmed here, so the server skips its own page
document.addEventListener("submit", function (e) {
  var form = e.target, question = form.getAttribute("data-confirm");
  if (!question) { return; }
  if (!window.confirm(question)) { e.preventDefault(); return; }
  if (!form.querySelector("input[name=confirmed]")) {
    var input = document.createElement("input");
    input.type = "hidden"; input.name = "confirmed"; input.value = "1";
    form.appendChild(input);
  }
});

function cell(text, className) {
  var td = document.createElement("td");
  if (className) { td.className = className; }
  td.textContent = text;
  return td;
}

function liveTasks(table) {
  var want = { state: table.dataset.state, queue: table.dataset.queue, type: table.dataset.type };
  var q = [];
  if (want.queue) { q.push("queue=" + encodeURIComponent(want.queue)); }
  if (want.type) { q.push("type=" + encodeURIComponent(want.type)); }
  var body = table.tBodies[0];
  // events that arrive while the rows are re-read, applied again after
  var pending = null;
  // rows added live whose priority and key are read from their record,
  // one at a time (the newest 50 at most wait)
  var priorities = [], reading = false;
  // what changed before the stream (re)opened: the page's rows read afresh
  function refresh() {
    pending = [];
    fetch(window.location.href, { headers: { "Accept": "text/html" } }).then(function (r) {
      if (!r.ok) { throw new Error("re-reading the task list: HTTP " + r.status); }
      return r.text();
    }).then(function (html) {
      var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("[data-live-tasks] tbody");
      if (fresh) {
        // the boxes ticked so far stay ticked
        var ticked = {};
        body.querySelectorAll("input[name=id]:checked").forEach(function (b) { ticked[b.value] = true; });
        body.innerHTML = fresh.innerHTML;
        body.querySelectorAll("input[name=id]").forEach(function (b) { b.checked = !!ticked[b.value]; });
        var empty = document.getElementById("empty");
        if (empty && body.rows.length > 0) { empty.remove(); }
      }
      var seen = pending;
      pending = null;
      seen.forEach(apply);
    }).catch(function (err) {
      pending = null;
      window.__errors.push(String(err));
    });
  }
  events(q.join("&"), function (ev) {
    if (pending) { pending.push(ev); }
    apply(ev);
  }, refresh);
  function apply(ev) {
    var row = body.querySelector('tr[data-id="' + ev.task_id + '"]');
    if (row) {
      setState(row.querySelector("[data-state]"), ev.state);
      var tries = row.querySelector("[data-tries]");
      if (tries) { tries.textContent = ev.tries + tries.textContent.replace(/^\d+/, ""); }
      if (ev.last_error) { row.querySelector(".err").textContent = ev.last_error; }
      return;
    }
    // a new task on the first page, when it passes the filter
    if (table.dataset.first !== "true" || ev.state !== "new") { return; }
    if (want.state && want.state !== "new") { return; }
    row = document.createElement("tr");
    row.dataset.id = ev.task_id;
    row.className = "fresh";
    var idCell = document.createElement("td"), link = document.createElement("a"), code = document.createElement("code");
    link.href = "/ui/tasks/" + encodeURIComponent(ev.task_id);
    code.textContent = ev.task_id; link.appendChild(code); idCell.appendChild(link);
    var stateCell = document.createElement("td"), badge = document.createElement("span");
    badge.setAttribute("data-state", ""); setState(badge, ev.state); stateCell.appendChild(badge);
    var triesCell = cell(String(ev.tries), "n"); triesCell.setAttribute("data-tries", "");
    var priorityCell = cell("", "n"); priorityCell.setAttribute("data-priority", "");
    var keyCell = cell(""); keyCell.setAttribute("data-key", "");
    if (table.dataset.select === "true") {
      var box = document.createElement("input"), boxCell = document.createElement("td");
      box.type = "checkbox"; box.name = "id"; box.value = ev.task_id;
      box.setAttribute("form", "selection"); box.setAttribute("aria-label", "select " + ev.task_id);
      boxCell.appendChild(box); row.append(boxCell);
    }
    row.append(idCell, cell(ev.task_type), cell(ev.queue || ""), stateCell, priorityCell, keyCell, triesCell,
      cell(new Date().toISOString().slice(0, 19) + "Z"), cell(ev.last_error || "", "err"));
    body.insertBefore(row, body.firstChild);
    var empty = document.getElementById("empty");
    if (empty) { empty.remove(); }
    // events carry no priority or key: the record has them
    priorities.push({ id: ev.task_id, cell: priorityCell, key: keyCell });
    if (priorities.length > 50) { priorities.shift(); }
    nextPriority();
  }
  function nextPriority() {
    if (reading || priorities.length === 0) { return; }
    var p = priorities.shift();
    reading = true;
    fetch("/v1/tasks/" + encodeURIComponent(p.id)).then(function (r) {
      return r.ok ? r.json() : {};
    }).then(function (t) {
      if (t.priority) { p.cell.textContent = String(t.priority); }
      if (t.key) { p.key.textContent = t.key; }
    }).catch(function (err) {
      window.__errors.push(String(err));
    }).then(function () {
      reading = false;
      nextPriority();
    });
  }
}

// the task's record: its state, tries, last error and result (read when
// its stream opens, for what changed before, and when it ends)
function showResult(box, id) {
  fetch("/v1/tasks/" + encodeURIComponent(id)).then(function (r) { return r.json(); }).then(function (t) {
    if (t.state) { setState(box.querySelector("[data-state]"), t.state); }
    var tries = box.querySelector("[data-tries]");
    if (tries && typeof t.tries === "number") { tries.textContent = tries.textContent.replace(/^\d+/, String(t.tries)); }
    var lastErr = box.querySelector("[data-last-err]");
    if (lastErr && t.last_err) { lastErr.textContent = t.last_err; }
    if (t.result) {
      var pre = document.createElement("pre");
      pre.textContent = JSON.stringify(t.result.payload, null, 2);
      var box2 = box.querySelector("[data-result]");
      box2.textContent = ""; box2.appendChild(pre);
    }
  }).catch(function (err) { window.__errors.push(String(err)); });
}

function liveTask(box) {
  var id = box.getAttribute("data-live-task"), list = box.querySelector("[data-events]");
  events("task=" + encodeURIComponent(id), function (ev) {
    setState(box.querySelector("[data-state]"), ev.state);
    var tries = box.querySelector("[data-tries]");
    if (tries) { tries.textContent = tries.textContent.replace(/^\d+/, String(ev.tries)); }
    if (ev.last_error) { box.querySelector("[data-last-err]").textContent = ev.last_error; }
    var li = document.createElement("li");
    li.textContent = new Date(ev.timestamp || Date.now()).toISOString().slice(11, 19) + " " + ev.state +
      " (try " + ev.tries + ")" + (ev.last_error ? ": " + ev.last_error : "");
    list.appendChild(li);
    // the result comes with the record
    if (FINAL.indexOf(ev.state) >= 0) { showResult(box, id); }
  }, function () { showResult(box, id); });
}

function liveChart(fig) {
  var seconds = 300, done = [], failed = [], now = { done: 0, failed: 0 };
  events("", function (ev) {
    if (ev.state === "complete") { now.done++; } else if (FAILED.indexOf(ev.state) >= 0) { now.failed++; }
  });
  function draw(line, values, max) {
    var pts = values.map(function (v, i) { return (i * 300 / (seconds - 1)).toFixed(1) + "," + (78 - v * 74 / max).toFixed(1); });
    line.setAttribute("points", pts.join(" "));
  }
  setInterval(function () {
    done.push(now.done); failed.push(now.failed);
    fig.querySelector('[data-rate="done"]').textContent = now.done;
    fig.querySelector('[data-rate="failed"]').textContent = now.failed;
    now = { done: 0, failed: 0 };
    if (done.length > seconds) { done.shift(); failed.shift(); }
    var max = Math.max(1, Math.max.apply(null, done.concat(failed)));
    draw(fig.querySelector("polyline.done"), done, max);
    draw(fig.querySelector("polyline.failed"), failed, max);
  }, 1000);
}

document.addEventListener("DOMContentLoaded", function () {
  var t = document.querySelector("[data-live-tasks]");
  if (t) { liveTasks(t); }
  var one = document.querySelector("[data-live-task]");
  if (one) { liveTask(one); }
  var chart = document.querySelector("[data-chart]");
  if (chart) { liveChart(chart); }
});
