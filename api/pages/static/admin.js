// The dashboard's one script (it runs because its tag carries the response's CSP nonce):
// polls the overview while the tab is visible (every 2 s, with ETags), asks before dangerous
// forms, selects all rows, and sends the CSRF token with its own requests.
"use strict";

(function () {
  const POLL_MS = 2000;
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  // Confirmations: a form with data-confirm, or a button with data-confirm, asks first.
  document.addEventListener("submit", function (event) {
    const button = event.submitter;
    const question = (button && button.dataset.confirm) || event.target.dataset.confirm;
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });

  const all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", function () {
      document.querySelectorAll('input[name="ids"]').forEach(function (box) {
        box.checked = all.checked;
      });
    });
  }

  const overview = document.getElementById("overview");
  if (!overview) {
    return;
  }
  let etag = "";
  let timer = null;

  function set(id, value) {
    const node = document.getElementById(id);
    if (node && value !== undefined && value !== null) {
      node.textContent = String(value);
    }
  }

  async function poll() {
    timer = null;
    try {
      const response = await fetch(overview.dataset.poll, {
        headers: etag ? { "If-None-Match": etag, "X-CSRF-Token": csrf } : { "X-CSRF-Token": csrf },
        credentials: "same-origin",
      });
      if (response.status === 200) {
        etag = response.headers.get("ETag") || "";
        const snap = await response.json();
        Object.entries(snap.totals).forEach(function ([state, n]) { set("total-" + state, n); });
        set("consumers", snap.consumers);
        set("updated", new Date(snap.at).toISOString().slice(0, 19).replace("T", " ") + " UTC");
        set("peak", snap.spark.peak);
        document.getElementById("spark-succeeded").setAttribute("points", snap.spark.succeeded);
        document.getElementById("spark-dead").setAttribute("points", snap.spark.dead);
        const warnings = document.getElementById("warnings");
        warnings.replaceChildren.apply(warnings, snap.warnings.map(function (text) {
          const p = document.createElement("p");
          p.className = "message warn";
          p.textContent = text;
          return p;
        }));
      } else if (response.status === 401 || response.redirected) {
        window.location.assign("/admin/login");
        return;
      }
    } catch (_) {
      // The API is restarting: try again at the next tick.
    }
    schedule();
  }

  function schedule() {
    if (!document.hidden && timer === null) {
      timer = window.setTimeout(poll, POLL_MS);
    }
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden && timer !== null) {
      window.clearTimeout(timer);
      timer = null;
    } else {
      schedule();
    }
  });
  schedule();
})();
