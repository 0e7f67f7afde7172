// The page's entry point: sign-in, sign-out and the hash router.
// Views: #/tokens (the list), #/tokens/ID (one token), #/audit. Ids and filters may sit in the
// URL; a secret never does.

import { ApiError, describe, setUnauthorizedHandler, signIn, signOut, token } from "./api.js";
import { ageNotice, showError } from "./dom.js";
import * as tokens from "./tokens.js";
import * as detail from "./detail.js";
import * as audit from "./audit.js";

const signinSection = document.getElementById("signin");
const signinForm = document.getElementById("signin-form");
const signinInput = document.getElementById("admin-token");
const signinError = document.getElementById("signin-error");
const signinButton = document.getElementById("signin-submit");
const app = document.getElementById("app");
const view = document.getElementById("view");

/** Bumped on every navigation: a view still loading for an older one draws nothing. */
let generation = 0;

function showSignIn(message = "") {
  for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close();
  generation += 1;
  view.replaceChildren();
  app.hidden = true;
  signinSection.hidden = false;
  document.title = "Sign in · tollgate";
  showError(signinError, message);
  signinInput.value = "";
  signinInput.focus();
}

function showApp() {
  signinSection.hidden = true;
  app.hidden = false;
  route();
}

signinForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const candidate = signinInput.value.trim();
  if (!candidate) {
    showError(signinError, "Enter the admin token.");
    signinInput.focus();
    return;
  }
  signinButton.disabled = true;
  showError(signinError, "");
  try {
    await signIn(candidate);
    signinInput.value = "";
    showApp();
  } catch (e) {
    const message = e instanceof ApiError && e.status === 401
      ? "That admin token is wrong: the admin API did not accept it. Copy it again from the " +
        "admin token file (data/admin.token by default) and retry."
      : describe(e);
    showError(signinError, message);
    signinInput.select();
  } finally {
    signinButton.disabled = false;
  }
});

document.getElementById("signout").addEventListener("click", () => {
  signOut();
  history.replaceState(null, "", location.pathname);
  showSignIn("");
});

setUnauthorizedHandler(() => {
  signOut();
  showSignIn("The admin API no longer accepts the token this tab signed in with (was it " +
    "changed?). Sign in again.");
});

function parseHash() {
  const hash = location.hash.replace(/^#/, "") || "/tokens";
  const [path, search = ""] = hash.split("?");
  return { parts: path.split("/").filter(Boolean), params: new URLSearchParams(search) };
}

async function route() {
  if (!token()) {
    showSignIn("");
    return;
  }
  ageNotice();
  const mine = ++generation;
  const ctx = { isCurrent: () => mine === generation };
  const { parts, params } = parseHash();
  let current = "tokens";
  if (parts[0] === "tokens" && parts.length === 2) {
    await detail.render(view, decodeURIComponent(parts[1]), ctx);
  } else if (parts[0] === "audit") {
    current = "audit";
    await audit.render(view, ctx);
  } else {
    if (parts[0] !== "tokens" || parts.length !== 1) history.replaceState(null, "", "#/tokens");
    await tokens.render(view, params, ctx);
  }
  for (const [id, name] of [["nav-tokens", "tokens"], ["nav-audit", "audit"]]) {
    const link = document.getElementById(id);
    if (name === current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

window.addEventListener("hashchange", () => {
  if (token()) route();
});

if (token()) showApp();
else showSignIn("");
