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

// The security page: sign in (with the code step when the account has a second factor), then
// add, confirm, replace or remove the authenticator. The tokens stay in this page's memory.
(function () {
  const signin = document.getElementById("signin-form");
  if (!signin) {
    return;
  }
  const status = document.getElementById("status");
  let access = "";
  let mfaToken = "";

  function show(text, kind) {
    status.textContent = text;
    status.className = kind || "";
  }

  async function call(method, path, body) {
    const headers = { "Content-Type": "application/json" };
    if (access) {
      headers.Authorization = "Bearer " + access;
    }
    const response = await fetch(path, {
      method: method,
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
    });
    let payload = null;
    if (response.status !== 204) {
      payload = await response.json().catch(function () { return null; });
    }
    if (!response.ok) {
      const message = payload && payload.error ? payload.error.message : "Something went wrong (" + response.status + ").";
      throw new Error(message);
    }
    return payload;
  }

  function secondFactor(codeInput, recoveryInput) {
    const code = codeInput.value.trim();
    const recovery = recoveryInput ? recoveryInput.value.trim() : "";
    if (/^[0-9 ]{6,12}$/.test(code)) {
      return { code: code };
    }
    return { recovery_code: recovery || code };
  }

  async function signedIn(tokens) {
    access = tokens.access_token;
    signin.hidden = true;
    document.getElementById("code-form").hidden = true;
    document.getElementById("factor").hidden = false;
    await refreshState();
  }

  async function refreshState() {
    const state = await call("GET", "/users/me/mfa");
    document.getElementById("factor-state").textContent = state.enabled
      ? "Your second factor is on (" + state.recovery_codes_left + " recovery codes unused)."
      : "Your second factor is off.";
    document.getElementById("enrol").hidden = state.enabled;
    document.getElementById("manage-form").hidden = !state.enabled;
  }

  function handle(form, handler) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      handler(event).catch(function (error) { show(error.message, "error"); });
    });
  }

  handle(signin, async function () {
    const result = await call("POST", "/users/login", {
      email: document.getElementById("email").value,
      password: document.getElementById("password").value,
    });
    if (result.mfa_required) {
      mfaToken = result.mfa_token;
      signin.hidden = true;
      document.getElementById("code-form").hidden = false;
      show("", "");
      return;
    }
    show("", "");
    await signedIn(result);
  });

  handle(document.getElementById("code-form"), async function () {
    const step = secondFactor(document.getElementById("login-code"), document.getElementById("login-recovery"));
    step.mfa_token = mfaToken;
    const tokens = await call("POST", "/users/login/mfa", step);
    show("", "");
    await signedIn(tokens);
  });

  document.getElementById("enrol").addEventListener("click", function () {
    call("POST", "/users/me/mfa/totp").then(function (enrolment) {
      const svg = new DOMParser().parseFromString(enrolment.qr_svg, "image/svg+xml").documentElement;
      document.getElementById("qr").replaceChildren(document.importNode(svg, true));
      document.getElementById("secret").textContent = enrolment.secret;
      document.getElementById("enrolment").hidden = false;
      document.getElementById("enrol").hidden = true;
    }).catch(function (error) { show(error.message, "error"); });
  });

  function showCodes(codes) {
    const list = document.getElementById("recovery-codes");
    list.replaceChildren();
    codes.forEach(function (code) {
      const item = document.createElement("li");
      item.textContent = code;
      list.appendChild(item);
    });
    document.getElementById("codes").hidden = false;
  }

  handle(document.getElementById("confirm-form"), async function () {
    const result = await call("POST", "/users/me/mfa/totp/confirm", {
      code: document.getElementById("confirm-code").value.trim(),
    });
    document.getElementById("enrolment").hidden = true;
    showCodes(result.recovery_codes);
    show("Your second factor is on.", "ok");
    await refreshState();
  });

  handle(document.getElementById("manage-form"), async function (event) {
    const step = secondFactor(document.getElementById("manage-code"));
    if (event.submitter && event.submitter.id === "disable") {
      await call("POST", "/users/me/mfa/disable", step);
      document.getElementById("codes").hidden = true;
      show("Your second factor is off.", "ok");
    } else {
      const result = await call("POST", "/users/me/mfa/recovery-codes", step);
      showCodes(result.recovery_codes);
      show("New recovery codes: the old ones no longer work.", "ok");
    }
    document.getElementById("manage-code").value = "";
    await refreshState();
  });
})();
