// agentwatch console: filters kept in the URL, cost charts (uPlot), live refresh.
(function () {
  "use strict";
  var PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04",
    "#db2777", "#4b5563", "#65a30d"];

  // Empty fields stay out of the URL; a preset range clears "to" so the link stays relative.
  function cleanSubmit(form) {
    form.addEventListener("submit", function () {
      Array.prototype.forEach.call(form.elements, function (el) {
        if (el.name && el.value === "") { el.disabled = true; }
      });
    });
    var range = form.querySelector("#range");
    if (range) {
      range.addEventListener("change", function () {
        var to = form.querySelector("input[name=to]");
        if (to && range.value.indexOf("now-") === 0) { to.value = ""; }
        form.requestSubmit();
      });
    }
  }

  function money(v) { return v == null ? "—" : "$" + v.toFixed(v >= 100 ? 2 : 4); }

  function drawCharts(root) {
    root.querySelectorAll(".chart").forEach(function (box) {
      var source = document.getElementById(box.dataset.series);
      if (!source) { return; }
      var rows = JSON.parse(source.textContent);
      var bucket = box.dataset.bucket, by = box.dataset.by;
      box.innerHTML = "";
      if (!rows.length) {
        box.innerHTML = '<p class="empty">No priced API calls in this range.</p>';
        return;
      }
      var times = [], keys = [], cell = {};
      rows.forEach(function (r) {
        var t = Date.parse(bucket === "day" ? r.day + "T00:00:00Z" : r.hour) / 1000;
        var k = r[by] || "(none)";
        if (times.indexOf(t) < 0) { times.push(t); }
        if (keys.indexOf(k) < 0) { keys.push(k); }
        cell[t + "|" + k] = r.cost_usd;
      });
      times.sort(function (a, b) { return a - b; });
      var data = [times];
      var series = [{}];
      keys.forEach(function (k, i) {
        data.push(times.map(function (t) { var v = cell[t + "|" + k]; return v == null ? 0 : v; }));
        series.push({
          label: k, stroke: PALETTE[i % PALETTE.length], width: 2,
          paths: times.length < 4 ? uPlot.paths.bars({ size: [0.6, 24] }) : undefined,
          fill: PALETTE[i % PALETTE.length] + "22", points: { show: times.length < 50 },
          value: function (u, v) { return money(v); }
        });
      });
      var width = Math.max(280, box.clientWidth || 400);
      /* global uPlot */
      new uPlot({
        width: width, height: 200, series: series,
        legend: { live: false },
        scales: { x: { time: true, range: function () {
          var lo = parseInt(box.dataset.from, 10), hi = parseInt(box.dataset.to, 10);
          var step = bucket === "day" ? 86400 : 3600;
          return [Math.floor(lo / step) * step, Math.max(hi, times[times.length - 1] + step)];
        } } },
        axes: [{}, { values: function (u, vals) { return vals.map(money); }, size: 70 }]
      }, data, box);
    });
  }

  function live() {
    var seconds = parseFloat(document.body.dataset.refresh || "0");
    var badge = document.getElementById("live");
    if (!seconds || !document.getElementById("main")) { return; }
    setInterval(function () {
      if (document.hidden || document.querySelector("details[open]") ||
          (document.activeElement && document.activeElement.tagName === "INPUT")) { return; }
      fetch(location.href, { credentials: "same-origin" }).then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.text();
      }).then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("main");
        if (!fresh) { return; }
        var main = document.getElementById("main");
        main.innerHTML = fresh.innerHTML;
        drawCharts(main);
        if (badge) { badge.classList.remove("stale"); badge.title = "updated " + new Date().toLocaleTimeString(); }
      }).catch(function () { if (badge) { badge.classList.add("stale"); } });
    }, seconds * 1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("filters");
    if (form) { cleanSubmit(form); }
    drawCharts(document);
    if (location.hash) {
      var target = document.getElementById(location.hash.slice(1));
      if (target) { target.classList.add("highlight"); }
    }
    live();
  });
})();
