/* Control Tower console: refresh the page's fragments in place. The pages work without it.
 *
 * <main data-fragments-url="..." data-refresh-seconds="15"> names a JSON endpoint answering
 * {"fragments": {name: html}, "done": bool}; every [data-fragment=name] gets the new html.
 * Like healthchecks: poll at the page's pace while the tab is visible and the user active,
 * slow down to a minute when idle or hidden, stop when the server says done.
 * Forms marked data-once disable their buttons on submit (no double emergency stop).
 * Every <time datetime> reads in the tower's zone; hovering it tells the reader's own local time.
 */
(function () {
  "use strict";

  var IDLE_AFTER_MS = 5 * 60 * 1000;
  var SLOW_MS = 60 * 1000;
  var MAX_BACKOFF_MS = 5 * 60 * 1000;

  function pad(number) { return (number < 10 ? "0" : "") + number; }

  function localTimes(root) {
    var zone = window.Intl ? Intl.DateTimeFormat().resolvedOptions().timeZone : "";
    root.querySelectorAll("time[datetime]").forEach(function (element) {
      var at = new Date(element.getAttribute("datetime"));
      if (isNaN(at.getTime())) { return; }
      element.title = "Your local time: " + at.getFullYear() + "-" + pad(at.getMonth() + 1) + "-" + pad(at.getDate())
        + " " + pad(at.getHours()) + ":" + pad(at.getMinutes()) + ":" + pad(at.getSeconds()) + (zone ? " (" + zone + ")" : "");
    });
  }

  function guardForms() {
    document.querySelectorAll("form[data-once]").forEach(function (form) {
      form.addEventListener("submit", function () {
        form.querySelectorAll("button[type=submit]").forEach(function (button) {
          // Disabled after this tick, so the clicked button's value is still submitted.
          setTimeout(function () { button.disabled = true; }, 0);
        });
      });
    });
  }

  function startRefresh(main) {
    var url = main.getAttribute("data-fragments-url");
    var activeMs = 1000 * (parseInt(main.getAttribute("data-refresh-seconds"), 10) || 15);
    var lastActivity = Date.now();
    var lastFetch = Date.now();
    var failures = 0;
    var timer = null;
    var stopped = false;
    var inFlight = false;

    function delay() {
      if (failures) { return Math.min(MAX_BACKOFF_MS, activeMs * Math.pow(2, failures)); }
      var idle = document.hidden || Date.now() - lastActivity > IDLE_AFTER_MS;
      return idle ? Math.max(SLOW_MS, activeMs) : activeMs;
    }

    function schedule() {
      clearTimeout(timer);
      if (!stopped) { timer = setTimeout(poll, delay()); }
    }

    function apply(fragments) {
      Object.keys(fragments).forEach(function (name) {
        // The document, not only <main>: the readiness line sits in the header, beside the kill switch.
        var target = document.querySelector('[data-fragment="' + name + '"]');
        if (target) { target.innerHTML = fragments[name]; localTimes(target); }
      });
    }

    function poll() {
      if (inFlight) { return; }
      inFlight = true;
      lastFetch = Date.now();
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (response) {
          inFlight = false;
          // A redirect means the session ended: show the login page rather than stale data.
          if (response.redirected) { stopped = true; window.location.reload(); return null; }
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.json();
        })
        .then(function (data) {
          if (!data) { return; }
          failures = 0;
          apply(data.fragments || {});
          if (data.done) { stopped = true; }
          schedule();
        })
        .catch(function () { inFlight = false; failures += 1; schedule(); });
    }

    ["mousemove", "keydown", "scroll", "touchstart", "click"].forEach(function (kind) {
      document.addEventListener(kind, function () { lastActivity = Date.now(); }, { passive: true });
    });
    document.addEventListener("visibilitychange", function () {
      // Back on the tab after a while: refresh at once instead of waiting for the slow timer.
      if (!document.hidden && !stopped && Date.now() - lastFetch > activeMs) { poll(); }
    });
    schedule();
  }

  document.addEventListener("DOMContentLoaded", function () {
    guardForms();
    localTimes(document);
    var main = document.querySelector("main[data-fragments-url]");
    if (main && window.fetch) { startRefresh(main); }
  });
})();
