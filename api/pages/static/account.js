// The account pages' one script (no inline script: the Content-Security-Policy forbids it).
// The token arrives in the link's fragment, which browsers never send to a server; it is read
// once and removed from the address bar, so it does not stay in history or get shared.
"use strict";

(function () {
  const params = new URLSearchParams(window.location.hash.slice(1));
  const token = params.get("token") || "";
  if (window.location.hash) {
    history.replaceState(null, "", window.location.pathname);
  }
  const status = document.getElementById("status");
  const submit = document.getElementById("submit");

  function show(text, kind) {
    status.textContent = text;
    status.className = kind;
  }

  async function post(path, body) {
    const response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "omit",
    });
    if (response.ok) {
      return null;
    }
    try {
      const payload = await response.json();
      return payload.error.message;
    } catch (_) {
      return "Something went wrong (" + response.status + "). Try again later.";
    }
  }

  function guard(form, handler) {
    if (!token) {
      show("This link is incomplete. Open the link from the mail again, or ask for a new one.", "error");
      submit.disabled = true;
      return;
    }
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      submit.disabled = true;
      const problem = await handler().catch(function () {
        return "The server cannot be reached. Try again later.";
      });
      if (problem) {
        show(problem, "error");
        submit.disabled = false;
      }
    });
  }

  const reset = document.getElementById("reset-form");
  if (reset) {
    guard(reset, async function () {
      const password = document.getElementById("password").value;
      if (password !== document.getElementById("confirm").value) {
        return "The two passwords differ.";
      }
      const problem = await post("/users/reset-password", { token: token, password: password });
      if (!problem) {
        reset.hidden = true;
        show("Your password was changed. You can log in with it now.", "ok");
      }
      return problem;
    });
  }

  const verify = document.getElementById("verify-form");
  if (verify) {
    guard(verify, async function () {
      const problem = await post("/users/verify-email", { token: token });
      if (!problem) {
        verify.hidden = true;
        show("Your email address is confirmed. You can close this page.", "ok");
      }
      return problem;
    });
  }
})();
