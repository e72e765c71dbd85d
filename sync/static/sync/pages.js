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
// of the listing's database (or of any, on the databases page) sends the listing's usual poll
// at once (204 when nothing it shows changed). A stream that never delivers (closed, refused,
// held back by a buffering proxy) leaves the polling on; after a reconnect the listing polls
// once, for what it may have missed. The tabs of a browser share one stream (push-worker.js).
(function () {
  var listing = document.querySelector("[data-push]");
  if (!listing) return;
  var url = listing.getAttribute("data-push");
  var mine = listing.getAttribute("data-push-database");
  window.dbsyncPushed = false;
  function changed(id) {
    if (!mine || id === mine || id === "0") {
      document.body.dispatchEvent(new CustomEvent("dbsync:changed"));
    }
  }
  var on = {
    ready: function () {
      var reconnected = window.dbsyncPushed === null;
      window.dbsyncPushed = true;
      if (reconnected) changed("0");
    },
    changed: changed,
    // Poll until the stream is back (the browser reconnects by itself), or for good if closed.
    lost: function () {
      if (window.dbsyncPushed) window.dbsyncPushed = null;
    },
    closed: function () {
      window.dbsyncPushed = false;
    },
  };
  var shared = listing.getAttribute("data-push-worker");
  if (window.SharedWorker && shared) {
    var worker = new SharedWorker(shared, { name: "dbsync-push" });
    worker.port.onmessage = function (message) {
      on[message.data.type](message.data.data);
    };
    worker.port.start();
    worker.port.postMessage({ url: url });
    window.addEventListener("pagehide", function () {
      worker.port.postMessage({ bye: true });
    });
    return;
  }
  if (!window.EventSource) return;
  var source = new EventSource(url, { withCredentials: true });
  source.addEventListener("ready", on.ready);
  source.addEventListener("changed", function (event) {
    changed(event.data);
  });
  source.addEventListener("error", function () {
    (source.readyState === EventSource.CLOSED ? on.closed : on.lost)();
  });
})();
