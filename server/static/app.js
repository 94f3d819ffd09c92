// Keeps an open page fresh at little cost: asks for the page's live part on a schedule
// (the browser revalidates with its ETag, so an unchanged board is a small 304), pauses
// while the tab is hidden, computes ages here (no download to say "2 minutes ago"), and
// says plainly when updates stop.
(function () {
  "use strict";
  var lang = document.documentElement.lang === "en" ? "en" : "vi";
  var box = document.getElementById("live");
  var banner = document.getElementById("offline");
  var units = lang === "vi"
    ? [[86400, " ngày trước"], [3600, " giờ trước"], [60, " phút trước"], [1, " giây trước"]]
    : [[86400, " d ago"], [3600, " h ago"], [60, " min ago"], [1, " s ago"]];

  function ago(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    if (s < 10) { return lang === "vi" ? "vừa xong" : "just now"; }
    for (var i = 0; i < units.length; i++) {
      if (s >= units[i][0]) { return Math.floor(s / units[i][0]) + units[i][1]; }
    }
    return "";
  }

  function ages() {
    var now = Date.now();
    var els = document.querySelectorAll("time[data-t]");
    for (var i = 0; i < els.length; i++) {
      var el = els[i], t = +el.getAttribute("data-t");
      if (!el.title) { el.title = el.textContent; }
      el.textContent = ago(now - t);
      var stale = +el.getAttribute("data-stale-ms");
      el.classList.toggle("stale", stale > 0 && now - t > stale);
    }
  }

  function offline(on) { if (banner) { banner.hidden = !on; } }

  var timer = null, last = null;
  var every = box ? Math.max(200, 1000 * (+box.getAttribute("data-refresh") || 30)) : 0;

  function schedule(ms) {
    if (timer) { clearTimeout(timer); }
    timer = document.hidden ? null : setTimeout(tick, ms);
  }

  function swap(html) {
    if (html === last) { return; }
    // Keep open <details> open across refreshes.
    var open = {};
    var ds = box.querySelectorAll("details[open][data-key]");
    for (var i = 0; i < ds.length; i++) { open[ds[i].getAttribute("data-key")] = 1; }
    box.innerHTML = html;
    ds = box.querySelectorAll("details[data-key]");
    for (var j = 0; j < ds.length; j++) {
      if (open[ds[j].getAttribute("data-key")]) { ds[j].open = true; }
    }
    last = html;
  }

  function tick() {
    timer = null;
    if (document.hidden) { return; }
    fetch(box.getAttribute("data-src"), {credentials: "same-origin", cache: "no-cache"})
      .then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.text();
      })
      .then(function (html) { swap(html); ages(); offline(false); schedule(every); })
      .catch(function () { offline(true); schedule(Math.min(every, 5000)); });
  }

  ages();
  setInterval(function () { if (!document.hidden) { ages(); } }, 15000);
  if (box) {
    last = box.innerHTML;
    document.addEventListener("visibilitychange", function () {
      if (document.hidden) { if (timer) { clearTimeout(timer); timer = null; } } else { tick(); }
    });
    window.addEventListener("online", tick);
    schedule(every);
  }
})();
