// The leaderboard site's script: fills the family table, the rows and the drill-down from the
// page's #data (written by leaderboard/site.py) for the filters in the address's hash.
// No network: everything it shows is in the page; figures are local files, loaded lazily.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("data").textContent);
  var FILTERS = ["suite", "task", "protocol", "student", "variant", "family", "metric"];
  var FIELD = { mean: 0, std: 1, low: 2, high: 3, delta: 4, delta_low: 5, delta_high: 6, p: 7, rank: 8, note: 9 };
  var COLUMNS = [
    { key: "task", label: "task", text: true },
    { key: "method", label: "method", text: true },
    { key: "seeds", label: "seeds" },
    { key: "mean", label: "mean ± std" },
    { key: "low", label: "interval" },
    { key: "delta", label: "Δ vs " + data.reference },
    { key: "p", label: "p" },
    { key: "rank", label: "rank" },
    { key: "files", label: "files", text: true, unsortable: true }
  ];
  var state = {};

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "className") node.className = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c !== null) node.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return node;
  }
  // x.toFixed(d) as Python's format(x, ".{d}f") rounds: an exact tie goes to the even digit (toFixed
  // rounds it up), so the page prints the digits `leaderboard show` prints.
  function fixed(x, d) {
    var up = x.toFixed(d), exact = Math.abs(x).toFixed(100), point = exact.indexOf(".");
    var tail = exact.slice(point + 1 + d);
    if (!/^50*$/.test(tail)) return up;
    var kept = exact.slice(0, d ? point + 1 + d : point);
    return Number(kept.charAt(kept.length - 1)) % 2 === 0 ? (x < 0 ? "-" : "") + kept : up;
  }
  function metricInfo() { return data.metrics[state.metric]; }
  function fmt(x) { var m = metricInfo(); return x == null ? "–" : fixed(m.scale * x, m.decimals); }
  function fmtSigned(x) { return x == null ? "–" : (x >= 0 ? "+" : "") + fmt(x); }
  function field(v, name) { var x = v[FIELD[name]]; return x === undefined ? (name === "note" ? "" : null) : x; }

  // -- state in the address ------------------------------------------------------------
  function readState() {
    var params = new URLSearchParams(window.location.hash.slice(1));
    FILTERS.forEach(function (name) {
      var v = params.get(name);
      state[name] = data.choices[name].indexOf(v) >= 0 ? v : data.choices[name][0];
    });
    state.sort = params.get("sort") || "";
    state.board = params.get("board") || "";
  }
  function hashFor(changes) {
    var next = Object.assign({}, state, changes || {});
    var params = new URLSearchParams();
    FILTERS.forEach(function (name) { params.set(name, next[name]); });
    if (next.sort) params.set("sort", next.sort);
    if (next.board) params.set("board", next.board);
    return "#" + params.toString();
  }
  function go(changes) { window.location.hash = hashFor(changes); }

  // -- selection ---------------------------------------------------------------------------
  function value(row, family) {
    var f = data.choices.family.indexOf(family || state.family);
    var v = data.choices.variant.indexOf(state.variant);
    var m = data.choices.metric.indexOf(state.metric);
    return row.values[f][v][m];
  }
  function selectedRows() {
    return data.rows.filter(function (r) {
      var b = data.boards[r.board];
      return b.suite === state.suite && b.protocol === state.protocol && b.student === state.student &&
        (state.task === "all" || b.task === state.task);
    });
  }
  function scope() {
    var tasks = state.task === "all" ? "every task" : state.task;
    return state.suite + " · " + state.protocol + " targets · " + state.student + " student · " +
      document.querySelector('#f-variant option[value="' + state.variant + '"]').textContent + " · " + tasks;
  }
  function best(values) {
    var xs = values.filter(function (x) { return x !== null; });
    if (!xs.length) return null;
    return metricInfo().higher ? Math.max.apply(null, xs) : Math.min.apply(null, xs);
  }

  // -- the family table: mean over the selected tasks of each board's family value ---------
  function renderFamilies(rows) {
    var table = document.getElementById("family-table");
    var methods = [];
    rows.forEach(function (r) { if (methods.indexOf(r.method) < 0) methods.push(r.method); });
    var cells = methods.map(function (method) {
      return data.choices.family.map(function (family) {
        var means = rows.filter(function (r) { return r.method === method; })
          .map(function (r) { var v = value(r, family); return v ? field(v, "mean") : null; })
          .filter(function (x) { return x !== null; });
        var sum = 0;
        means.forEach(function (x) { sum += x; });
        return { mean: means.length ? sum / means.length : null, tasks: means.length };
      });
    });
    var bests = data.choices.family.map(function (_, j) { return best(cells.map(function (c) { return c[j].mean; })); });
    table.tHead.replaceChildren(el("tr", {}, [el("th", { className: "text", text: "method" })].concat(
      data.choices.family.map(function (f) { return el("th", { text: f }); }))));
    table.tBodies[0].replaceChildren.apply(table.tBodies[0], methods.map(function (method, i) {
      return el("tr", { "data-method": method }, [el("td", { className: "text", text: method })].concat(cells[i].map(function (c, j) {
        var attrs = { "data-family": data.choices.family[j], "data-tasks": String(c.tasks), "data-value": c.mean === null ? "" : String(c.mean),
          title: c.tasks + " task(s)" };
        if (c.mean !== null && c.mean === bests[j] && methods.length > 1) attrs.className = "best";
        return el("td", attrs, [fmt(c.mean), c.mean === null ? null : el("small", { text: " [" + c.tasks + "]" })]);
      })));
    }));
    document.getElementById("family-caption").textContent =
      metricInfo().label + " (" + state.metric + ") by set family, mean over tasks [tasks]: " + scope();
  }

  // -- the rows -----------------------------------------------------------------------------
  function links(row) {
    var out = [];
    row.entries.forEach(function (href, i) { out.push(el("a", { href: href, title: "entry, seed " + row.seeds[i] }, ["s" + row.seeds[i]])); });
    row.predictions.forEach(function (href) { out.push(el("a", { href: href, title: "predictions (.npz)", className: "npz" }, ["npz"])); });
    return el("td", { className: "text files" }, out);
  }
  function sortKey(row, key) {
    if (key === "task") return data.boards[row.board].task;
    if (key === "method") return row.method;
    if (key === "seeds") return row.seeds.length;
    var v = value(row);
    return v ? field(v, key) : null;
  }
  function sortRows(rows) {
    if (!state.sort) return rows;
    var desc = state.sort.charAt(0) === "-", key = desc ? state.sort.slice(1) : state.sort;
    var column = COLUMNS.filter(function (c) { return c.key === key; })[0];
    if (!column || column.unsortable) return rows;
    return rows.map(function (r, i) { return [r, i]; }).sort(function (a, b) {
      var x = sortKey(a[0], key), y = sortKey(b[0], key);
      if (x === null || y === null) return x === y ? a[1] - b[1] : x === null ? 1 : -1;
      var c = column.text ? String(x).localeCompare(String(y)) : x - y;
      return (desc ? -c : c) || a[1] - b[1];
    }).map(function (p) { return p[0]; });
  }
  function renderRows(rows) {
    var table = document.getElementById("rows-table");
    var desc = state.sort.charAt(0) === "-", key = desc ? state.sort.slice(1) : state.sort;
    table.tHead.replaceChildren(el("tr", {}, COLUMNS.map(function (c) {
      var th = el("th", { "data-key": c.key, className: c.text ? "text" : "" }, [c.label]);
      if (c.key === key) th.setAttribute("aria-sort", desc ? "descending" : "ascending");
      if (!c.unsortable) th.addEventListener("click", function () { go({ sort: (c.key === key && !desc ? "-" : "") + c.key }); });
      return th;
    })));
    var open = boardOpen();
    var column = rows.map(function (r) { var v = value(r); return v ? field(v, "mean") : null; });
    table.tBodies[0].replaceChildren.apply(table.tBodies[0], sortRows(rows).map(function (r) {
      var b = data.boards[r.board], v = value(r);
      var sameTask = column.filter(function (_, i) { return data.boards[rows[i].board].task === b.task; });
      var tr = el("tr", { "data-task": b.task, "data-method": r.method, className: open === b.task ? "open" : "" });
      var task = el("a", { href: hashFor({ board: b.task }), className: "drill" }, [b.task]);
      tr.appendChild(el("td", { className: "text" }, [task]));
      tr.appendChild(el("td", { className: "text", text: r.method }));
      tr.appendChild(el("td", { text: String(r.seeds.length) }));
      if (!v) {
        tr.appendChild(el("td", { colspan: "5", className: "text", text: "not scored" }));
      } else if (field(v, "mean") == null) {
        tr.appendChild(el("td", { colspan: "5", className: "text", text: "n/a: " + field(v, "note") }));
      } else {
        var mean = el("td", { "data-value": String(field(v, "mean")), title: field(v, "note") },
          [fmt(field(v, "mean")) + (field(v, "std") == null ? "" : " ± " + fmt(field(v, "std")))]);
        if (field(v, "mean") === best(sameTask) && sameTask.length > 1) mean.className = "best";
        tr.appendChild(mean);
        tr.appendChild(el("td", { text: field(v, "low") == null ? "–" : "[" + fmt(field(v, "low")) + ", " + fmt(field(v, "high")) + "]" }));
        tr.appendChild(el("td", {}, [fmtSigned(field(v, "delta")), field(v, "delta_low") == null ? null :
          el("small", { text: " [" + fmtSigned(field(v, "delta_low")) + ", " + fmtSigned(field(v, "delta_high")) + "]" })]));
        tr.appendChild(el("td", { text: field(v, "p") == null ? "–" : String(Number(field(v, "p").toPrecision(3))) }));
        tr.appendChild(el("td", { className: "rank", text: field(v, "rank") == null ? "" : "#" + field(v, "rank") }));
      }
      tr.appendChild(links(r));
      return tr;
    }));
    document.getElementById("rows-caption").textContent =
      metricInfo().label + " on " + state.family + ": " + scope() + " (" + rows.length + " rows)";
  }

  // -- the drill-down: one board, its methods by family, its figures ------------------------
  function boardOpen() { return state.task !== "all" ? state.task : state.board; }
  function renderDrill(rows) {
    var section = document.getElementById("drill");
    var task = boardOpen();
    var mine = rows.filter(function (r) { return data.boards[r.board].task === task; });
    if (!task || !mine.length) { section.hidden = true; return; }
    var board = data.boards[mine[0].board];
    section.hidden = false;
    document.getElementById("drill-title").textContent = board.label;
    document.getElementById("drill-close").setAttribute("href", hashFor({ board: "", task: "all" }));
    var table = document.getElementById("drill-table");
    table.tHead.replaceChildren(el("tr", {}, [el("th", { className: "text", text: "method" })].concat(
      data.choices.family.map(function (f) { return el("th", { text: f }); }), [el("th", { className: "text", text: "files" })])));
    table.tBodies[0].replaceChildren.apply(table.tBodies[0], mine.map(function (r) {
      return el("tr", { "data-method": r.method }, [el("td", { className: "text", text: r.method })].concat(data.choices.family.map(function (f) {
        var v = value(r, f);
        if (!v) return el("td", { text: "–" });
        if (field(v, "mean") == null) return el("td", { title: field(v, "note"), text: "n/a" });
        var parts = [fmt(field(v, "mean")) + (field(v, "std") == null ? "" : " ± " + fmt(field(v, "std")))];
        if (field(v, "low") != null) parts.push(el("br"), el("small", { text: "[" + fmt(field(v, "low")) + ", " + fmt(field(v, "high")) + "]" }));
        if (field(v, "delta") != null) parts.push(el("br"), el("small", { text: "Δ " + fmtSigned(field(v, "delta")) + ", p=" + Number(field(v, "p").toPrecision(3)) }));
        return el("td", { title: field(v, "note") }, parts);
      }), [links(r)]));
    }));
    var figures = document.getElementById("drill-figures");
    figures.replaceChildren.apply(figures, board.figures.map(function (src) {
      return el("img", { src: src, alt: src.split("/").pop().replace(/\.[a-z]+$/, ""), loading: "lazy" });
    }));
  }

  function render() {
    readState();
    FILTERS.forEach(function (name) { var s = document.getElementById("f-" + name); if (s) s.value = state[name]; });
    var rows = selectedRows();
    renderFamilies(rows);
    renderRows(rows);
    renderDrill(rows);
    document.body.setAttribute("data-state", hashFor().slice(1));
  }

  FILTERS.forEach(function (name) {
    var select = document.getElementById("f-" + name);
    if (select) select.addEventListener("change", function () { var c = {}; c[name] = select.value; if (name === "task") c.board = ""; go(c); });
  });
  window.addEventListener("hashchange", render);
  render();
  document.body.setAttribute("data-ready", "yes");
})();
