// The Create token dialog, and the one moment a secret is on screen.
//
// The secret lives in one variable of this dialog's session and in the (masked) input that shows
// it; closing the dialog, by any way, empties both. It is never put in the URL, storage, the
// history, an attribute or the console.

import { api, describe } from "./api.js";
import { h, permissionList, replace, showError } from "./dom.js";

// The Controller's resources, in its order. Hard-coded rather than fetched: the list is part of
// the admin API's contract (INTERFACES.md), changes only with a release that also rebuilds these
// files, and fetching it would add an API route and a round trip before the dialog can open.
// A unit test in src/admin/web.rs checks that it matches `Resource::ALL`.
const RESOURCES = [
  "configs", "agents", "reporting-rules", "labels", "heartbeat", "tokens", "analytics", "users",
  "invites", "password-resets", "settings", "license", "entitlements",
];
const ACTIONS = ["read", "write", "delete", "all"];

const dialog = document.getElementById("create-dialog");
const form = document.getElementById("create-form");
const name = document.getElementById("create-name");
const description = document.getElementById("create-description");
const gridWrap = document.getElementById("perm-grid-wrap");
const gridBody = document.querySelector("#perm-grid tbody");
const expiry = document.getElementById("create-expiry");
const dateWrap = document.getElementById("create-date-wrap");
const date = document.getElementById("create-date");
const error = document.getElementById("create-error");
const submit = document.getElementById("create-submit");
const secretStep = document.getElementById("secret-step");
const secretInput = document.getElementById("new-secret");
const secretFor = document.getElementById("secret-for");
const showButton = document.getElementById("secret-show");
const copyButton = document.getElementById("secret-copy");
const copied = document.getElementById("secret-copied");

replace(gridBody, RESOURCES.map((resource) => h("tr", {},
  h("th", { scope: "row" }, resource),
  ACTIONS.map((action) => h("td", {}, h("input", {
    type: "checkbox", class: "perm", name: "perm", value: `${resource}:${action}`,
    "aria-label": `${resource}: ${action}`,
    dataset: { resource, action },
  }))))));

// "All" grants the other three: ticking it ticks and locks them, so the grid says what it means.
gridBody.addEventListener("change", (event) => {
  const box = event.target;
  if (box.dataset.action !== "all") return;
  for (const other of gridBody.querySelectorAll(`input[data-resource="${box.dataset.resource}"]`)) {
    if (other === box) continue;
    other.checked = box.checked;
    other.disabled = box.checked;
  }
});

for (const radio of form.querySelectorAll("input[name=perm-mode]")) {
  radio.addEventListener("change", () => {
    gridWrap.hidden = mode() !== "custom";
  });
}

expiry.addEventListener("change", () => {
  dateWrap.hidden = expiry.value !== "date";
  if (!dateWrap.hidden) date.focus();
});

function mode() {
  return form.querySelector("input[name=perm-mode]:checked").value;
}

/** The request body, or a message naming what is missing. */
function body() {
  const b = { name: name.value.trim() };
  if (!b.name) return { problem: "Give the token a name.", focus: name };
  if (description.value.trim()) b.description = description.value.trim();
  if (mode() === "preset") {
    b.preset = "telegraf-agent";
  } else {
    const checked = [...gridBody.querySelectorAll("input.perm:checked")];
    const all = new Set(checked.filter((c) => c.dataset.action === "all").map((c) => c.dataset.resource));
    b.permissions = checked
      .filter((c) => c.dataset.action === "all" || !all.has(c.dataset.resource))
      .map((c) => c.value);
    if (b.permissions.length === 0) {
      return { problem: "Tick at least one permission, or choose the Telegraf Agent preset.", focus: gridBody.querySelector("input") };
    }
  }
  if (expiry.value === "date") {
    if (!date.value) return { problem: "Choose the expiry date.", focus: date };
    b.expires_at = date.value;
  } else if (expiry.value !== "never") {
    b.expires_in = expiry.value;
  }
  return { body: b };
}

let session = null; // { secret, record, onCreated } while the dialog is open
let pending = false; // a create call is in flight
const cancelButton = document.getElementById("create-cancel");

/** Opens the dialog; `onCreated(record)` runs after it closes when a token was created. */
export function open(onCreated) {
  form.reset();
  for (const box of gridBody.querySelectorAll("input")) box.disabled = false;
  gridWrap.hidden = true;
  dateWrap.hidden = true;
  const tomorrow = new Date(Date.now() + 86400000).toISOString().slice(0, 10);
  date.min = tomorrow;
  showError(error, "");
  submit.disabled = false;
  form.hidden = false;
  secretStep.hidden = true;
  session = { secret: null, record: null, onCreated };
  dialog.showModal();
  name.focus();
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const built = body();
  if (built.problem) {
    showError(error, built.problem);
    built.focus?.focus();
    return;
  }
  submit.disabled = true;
  cancelButton.disabled = true;
  pending = true;
  showError(error, "");
  const mine = session;
  try {
    const created = await api.create(built.body);
    if (session !== mine) return; // closed meanwhile: the secret is dropped unseen
    const { token, ...record } = created;
    session.secret = token;
    session.record = record;
    showSecret(record);
  } catch (e) {
    showError(error, describe(e));
    if (e.status === 409 || /^name/.test(e.message)) name.focus();
  } finally {
    pending = false;
    submit.disabled = false;
    cancelButton.disabled = false;
  }
});

// While the create call runs, the dialog stays open: closing it then would create a token whose
// secret nobody ever sees.
dialog.addEventListener("cancel", (event) => {
  if (pending) event.preventDefault();
});

function showSecret(record) {
  dialog.setAttribute("aria-labelledby", "secret-title");
  form.hidden = true;
  secretStep.hidden = false;
  replace(secretFor, `For “${record.name}”, with `, permissionList(record.permissions),
    record.expires_at ? `Expires ${record.expires_at}.` : "No expiry.");
  secretInput.classList.add("masked");
  secretInput.value = session.secret;
  showButton.textContent = "Show";
  showButton.setAttribute("aria-pressed", "false");
  copied.textContent = "";
  copyButton.focus();
}

showButton.addEventListener("click", () => {
  // Masked with CSS rather than a password field, so no password manager offers to keep it.
  const show = secretInput.classList.toggle("masked") === false;
  showButton.textContent = show ? "Hide" : "Show";
  showButton.setAttribute("aria-pressed", String(show));
});

copyButton.addEventListener("click", async () => {
  if (!session?.secret) return;
  try {
    await navigator.clipboard.writeText(session.secret);
    copied.textContent = "Copied to the clipboard.";
  } catch (e) {
    copied.textContent = "The browser refused the clipboard: press Show, then select the token and copy it.";
  }
});

cancelButton.addEventListener("click", () => dialog.close());
document.getElementById("secret-done").addEventListener("click", () => dialog.close());

// However the dialog closes (Done, Cancel, Escape), the secret goes with it.
dialog.addEventListener("close", () => {
  const ended = session;
  session = null;
  secretInput.value = "";
  secretInput.classList.add("masked");
  replace(secretFor);
  copied.textContent = "";
  form.reset();
  form.hidden = false;
  secretStep.hidden = true;
  dialog.setAttribute("aria-labelledby", "create-title");
  if (ended?.record) ended.onCreated(ended.record);
});
