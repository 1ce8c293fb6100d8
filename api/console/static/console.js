/* Runway console: times in the browser's zone (UTC on hover), live parts refreshed by
   polling a fragment, and a confirmation before bulk actions. No dependencies. */
(function () {
  "use strict";

  var format = { year: "numeric", month: "short", day: "numeric",
                 hour: "2-digit", minute: "2-digit", second: "2-digit" };

  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (node) {
      if (node.dataset.local) return;
      var moment = new Date(node.getAttribute("datetime"));
      if (isNaN(moment.getTime())) return;
      node.title = moment.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
      node.textContent = moment.toLocaleString(undefined, format);
      node.dataset.local = "1";
    });
  }

  // An element with data-live="<url>" is replaced by what the url answers, every
  // data-every milliseconds (1000 by default), until the answer says `Runway-Live: done`.
  function live(element) {
    var url = element.dataset.live;
    var every = Number(element.dataset.every) || 1000;
    if (element.hasAttribute("data-done")) return;

    function refresh() {
      if (document.hidden) { setTimeout(refresh, every); return; }
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html", "Runway-Fragment": "1" } })
        .then(function (response) {
          if (response.status === 401 || response.status === 404) return null;
          return response.text().then(function (text) {
            if (response.ok) { element.innerHTML = text; localTimes(element); }
            return response.headers.get("Runway-Live") === "done" ? null : true;
          });
        })
        .catch(function () { return true; })
        .then(function (again) { if (again) setTimeout(refresh, every); });
    }
    setTimeout(refresh, every);
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    document.querySelectorAll("[data-live]").forEach(live);
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });
  });
})();
