// Trend charts from the series API (hourly/daily rollups for long ranges), drawn with the
// vendored uPlot, in Vietnam time, with the field's watch/danger lines where one applies.
(function () {
  "use strict";
  if (typeof uPlot === "undefined") { return; }
  var lang = document.documentElement.lang === "en" ? "en" : "vi";
  var tz = "Asia/Ho_Chi_Minh";
  function fmt(v) {
    return v == null ? "" : v.toLocaleString(lang === "vi" ? "vi-VN" : "en-GB", {maximumFractionDigits: 2});
  }
  function pad(n) { return n < 10 ? "0" + n : "" + n; }
  function when(span) {
    return function (u, splits) {
      return splits.map(function (s) {
        var d = uPlot.tzDate(new Date(s * 1000), tz);
        return span <= 2 * 86400 ? pad(d.getHours()) + ":" + pad(d.getMinutes())
          : d.getDate() + "/" + (d.getMonth() + 1);
      });
    };
  }
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
        var series = [
          {},
          {label: fig.getAttribute("data-label"), stroke: "#1f6f3f", width: 2},
          {label: "min", stroke: "#9ab89f", width: 1},
          {label: "max", stroke: "#9ab89f", width: 1}
        ];
        var data = [xs, ys, lo, hi];
        [["data-watch", "#b25e00"], ["data-danger", "#b00020"]].forEach(function (line) {
          var at = fig.getAttribute(line[0]);
          if (at !== null) {
            data.push(xs.map(function () { return +at; }));
            series.push({label: line[0], stroke: line[1], width: 1.5, dash: [6, 4]});
          }
        });
        plot.textContent = "";
        var width = Math.max(280, Math.min(plot.clientWidth || 320, 900));
        new uPlot({
          width: width, height: 180,
          tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), tz); },
          legend: {show: false},
          series: series,
          axes: [{values: when(xs[xs.length - 1] - xs[0])},
                 {values: function (u, vals) { return vals.map(fmt); }}]
        }, data, plot);
      })
      .catch(function () { plot.textContent = fig.getAttribute("data-empty"); });
  });
})();
