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

// The push channel: while its stream is open, the listing does not poll; each `changed` event
// sends the listing's usual poll at once (204 when nothing it shows changed). A stream that
// never delivers (closed, refused, held back by a buffering proxy) leaves the polling on; after
// a reconnect the listing polls once, for what it may have missed.
(function () {
  var listing = document.querySelector("[data-push]");
  if (!listing || !window.EventSource) return;
  window.dbsyncPushed = false;
  var source = new EventSource(listing.getAttribute("data-push"), { withCredentials: true });
  function changed() {
    document.body.dispatchEvent(new CustomEvent("dbsync:changed"));
  }
  source.addEventListener("ready", function () {
    var reconnected = window.dbsyncPushed === null;
    window.dbsyncPushed = true;
    if (reconnected) changed();
  });
  source.addEventListener("changed", changed);
  source.addEventListener("error", function () {
    // Poll until the stream is back; the browser reconnects by itself after `retry`.
    if (window.dbsyncPushed) window.dbsyncPushed = null;
    if (source.readyState === EventSource.CLOSED) window.dbsyncPushed = false;
  });
})();
