// Trend charts from the series API (hourly/daily rollups for long ranges), drawn with the
// vendored uPlot. Times are shown in Vietnam time.
(function () {
  "use strict";
  if (typeof uPlot === "undefined") { return; }
  var lang = document.documentElement.lang === "en" ? "en" : "vi";
  var tz = "Asia/Ho_Chi_Minh";
  function fmt(v) { return v == null ? "" : v.toLocaleString(lang === "vi" ? "vi-VN" : "en-GB", {maximumFractionDigits: 2}); }
  var figs = document.querySelectorAll("figure.chart[data-series]");
  Array.prototype.forEach.call(figs, function (fig) {
    var plot = fig.querySelector(".plot");
    fetch(fig.getAttribute("data-series"), {credentials: "same-origin"})
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
      .then(function (s) {
        if (!s.points.length) { plot.textContent = fig.getAttribute("data-empty"); return; }
        var xs = [], ys = [], lo = [], hi = [];
        s.points.forEach(function (p) {
          xs.push(p.t / 1000); ys.push(p.v);
          lo.push(p.min == null ? p.v : p.min); hi.push(p.max == null ? p.v : p.max);
        });
        plot.textContent = "";
        var width = Math.max(280, Math.min(plot.clientWidth || 320, 900));
        new uPlot({
          width: width, height: 180,
          tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), tz); },
          legend: {show: false},
          series: [
            {},
            {label: fig.getAttribute("data-label"), stroke: "#1f6f3f", width: 2, value: function (u, v) { return fmt(v); }},
            {label: "min", stroke: "#9ab89f", width: 1},
            {label: "max", stroke: "#9ab89f", width: 1}
          ],
          axes: [{}, {values: function (u, vals) { return vals.map(fmt); }}]
        }, [xs, ys, lo, hi], plot);
      })
      .catch(function () { plot.textContent = fig.getAttribute("data-empty"); });
  });
})();
