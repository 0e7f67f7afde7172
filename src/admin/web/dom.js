// Small DOM helpers. Every piece of data reaches the page through textContent or an attribute,
// never through HTML parsing: a token named <img src=x onerror=alert(1)> is shown as that text.
// (The Content-Security-Policy also requires Trusted Types, so an HTML sink would throw.)

/** Creates an element: h("a", {href: "#/x", class: "link"}, "text", child, …). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "checked" || key === "disabled" || key === "hidden" || key === "value") {
      el[key] = value;
    } else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** Shows `message` in an error element, or hides it when `message` is empty. */
export function showError(el, message) {
  el.textContent = message || "";
  el.hidden = !message;
}

/** "2026-11-27 21:00:05 UTC", with the local time as a tooltip. */
export function time(iso, empty = "—") {
  if (!iso) return h("span", { class: "muted" }, empty);
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return h("span", {}, iso);
  const text = iso.replace("T", " ").replace(/Z$/, " UTC");
  return h("time", { datetime: iso, title: `Local time: ${d.toLocaleString()}` }, text);
}

/** "3 minutes ago", "in 6 days": for last-used and expiry hints. */
export function relative(iso) {
  if (!iso) return "";
  const seconds = Math.round((new Date(iso).getTime() - Date.now()) / 1000);
  const units = [["year", 31536000], ["month", 2592000], ["day", 86400], ["hour", 3600], ["minute", 60]];
  const rtf = new Intl.RelativeTimeFormat("en", { numeric: "auto" });
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size) return rtf.format(Math.trunc(seconds / size), unit);
  }
  return rtf.format(seconds, "second");
}

const STATUS_LABEL = { active: "Active", revoked: "Revoked", expired: "Expired" };

export function badge(status) {
  return h("span", { class: `badge badge-${status}` }, STATUS_LABEL[status] || status);
}

/** "configs: read" for "configs:read". */
export function permissionLabel(p) {
  return p.replace(":", ": ");
}

export function permissionList(perms) {
  return h("ul", { class: "perms" }, perms.map((p) => h("li", {}, permissionLabel(p))));
}

/** "1 token", "3 tokens". */
export function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

// ---- notices ----

let keepNotice = false;

/** Shows a notice at the top of the page until the next view change, or, with `navigating`,
 *  the one after it (for a notice shown just before moving to another view). */
export function notify(text, { navigating = false } = {}) {
  const el = document.getElementById("notice");
  el.textContent = text;
  el.hidden = false;
  keepNotice = navigating;
}

/** Called on each navigation: a notice lasts one view change. */
export function ageNotice() {
  if (keepNotice) {
    keepNotice = false;
    return;
  }
  const el = document.getElementById("notice");
  el.hidden = true;
  el.textContent = "";
}

// ---- the confirmation dialog ----

/**
 * Asks for confirmation in a modal dialog that names what will happen. `run(reason)` does the
 * work; a refusal is shown inside the dialog, which stays open. Resolves to `run`'s result, or
 * to undefined when cancelled.
 */
export function confirmAction({ title, body, reason = false, confirmLabel, run, describeError }) {
  const dialog = document.getElementById("confirm-dialog");
  const form = document.getElementById("confirm-form");
  const ok = document.getElementById("confirm-ok");
  const cancel = document.getElementById("confirm-cancel");
  const reasonWrap = document.getElementById("confirm-reason-wrap");
  const reasonInput = document.getElementById("confirm-reason");
  const error = document.getElementById("confirm-error");
  document.getElementById("confirm-title").textContent = title;
  replace(
    document.getElementById("confirm-body"),
    body.map((part) => (part instanceof Node ? part : h("p", {}, part))),
  );
  reasonWrap.hidden = !reason;
  reasonInput.value = "";
  ok.textContent = confirmLabel;
  ok.disabled = false;
  cancel.disabled = false;
  showError(error, "");
  return new Promise((resolve) => {
    let result;
    let busy = false;
    // While the call runs, Escape must not hide a change that is still happening.
    dialog.oncancel = (event) => {
      if (busy) event.preventDefault();
    };
    form.onsubmit = async (event) => {
      event.preventDefault();
      busy = true;
      ok.disabled = true;
      cancel.disabled = true;
      showError(error, "");
      try {
        result = await run(reasonInput.value.trim());
        busy = false;
        dialog.close("done");
      } catch (e) {
        busy = false;
        showError(error, describeError(e));
        ok.disabled = false;
        cancel.disabled = false;
      }
    };
    cancel.onclick = () => dialog.close("cancel");
    dialog.onclose = () => {
      form.onsubmit = null;
      dialog.onclose = null;
      dialog.oncancel = null;
      resolve(dialog.returnValue === "done" ? result : undefined);
    };
    dialog.returnValue = "";
    dialog.showModal();
    (reason ? reasonInput : cancel).focus();
  });
}
