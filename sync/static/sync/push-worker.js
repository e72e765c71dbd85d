// One push stream for every tab of this browser: a browser opens at most six connections to a
// host and port over HTTP/1.1, so each tab holding its own stream would leave the seventh tab
// without one. The tabs join here, and hear each event of the one stream of their URL.
var sources = {};

function send(entry, message) {
  entry.ports.forEach(function (port) {
    port.postMessage(message);
  });
}

function open(url) {
  var entry = { ports: new Set(), ready: false };
  var source = new EventSource(url, { withCredentials: true });
  entry.source = source;
  source.addEventListener("ready", function () {
    entry.ready = true;
    send(entry, { type: "ready" });
  });
  source.addEventListener("changed", function (event) {
    send(entry, { type: "changed", data: event.data });
  });
  source.addEventListener("error", function () {
    entry.ready = false;
    var closed = source.readyState === EventSource.CLOSED;
    send(entry, { type: closed ? "closed" : "lost" });
    if (closed) delete sources[url];
  });
  return entry;
}

function join(port, url) {
  var entry = sources[url] || (sources[url] = open(url));
  entry.ports.add(port);
  port.dbsyncUrl = url;
  if (entry.ready) port.postMessage({ type: "ready" });
}

function leave(port) {
  var entry = sources[port.dbsyncUrl];
  if (!entry) return;
  entry.ports.delete(port);
  if (!entry.ports.size) {
    entry.source.close();
    delete sources[port.dbsyncUrl];
  }
}

onconnect = function (event) {
  var port = event.ports[0];
  port.onmessage = function (message) {
    if (message.data.url) join(port, message.data.url);
    if (message.data.bye) leave(port);
  };
  port.start();
};
