// Keep "synced 12 s ago" true between polls, which answer 204 while nothing changed.
(function () {
  function span(seconds) {
    if (seconds < 60) return seconds + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min";
    if (seconds < 86400) return Math.floor(seconds / 3600) + " h";
    return Math.floor(seconds / 86400) + " d";
  }
  function refresh() {
    document.querySelectorAll("time[data-ago]").forEach(function (element) {
      var moment = Date.parse(element.getAttribute("datetime"));
      if (!isNaN(moment)) {
        element.textContent = span(Math.max(0, Math.floor((Date.now() - moment) / 1000))) + " ago";
      }
    });
  }
  setInterval(function () {
    if (document.visibilityState === "visible") refresh();
  }, 5000);
})();
