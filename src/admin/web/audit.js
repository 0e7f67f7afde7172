// The Audit page: every change to a token, newest first, in pages of 100.

import { api, describe } from "./api.js";
import { h, replace, showError, time } from "./dom.js";

const PAGE = 100;
const ACTION_LABEL = { created: "Created", imported: "Imported", revoked: "Revoked", deleted: "Deleted" };

/** A table of audit events; shared with the token detail view. */
export function eventsTable(events, { linkTokens = true, body = null } = {}) {
  const tbody = body || h("tbody", {});
  appendEvents(tbody, events, linkTokens);
  return h("div", { class: "table-wrap" }, h("table", { class: "events" },
    h("caption", { class: "visually-hidden" }, "Audit events, newest first"),
    h("thead", {}, h("tr", {},
      ["Time", "Action", linkTokens ? "Token" : null, "Actor", "Reason"]
        .filter(Boolean).map((label) => h("th", { scope: "col" }, label)))),
    tbody));
}

function appendEvents(tbody, events, linkTokens) {
  const cell = (label, ...content) => h("td", { dataset: { label } }, ...content);
  tbody.append(...events.map((e) => h("tr", { dataset: { seq: String(e.seq), action: e.action } },
    cell("Time", time(e.at)),
    cell("Action", h("span", { class: `badge badge-${e.action}` }, ACTION_LABEL[e.action] || e.action)),
    linkTokens
      ? cell("Token", h("a", { href: `#/tokens/${e.token_id}`, title: e.token_id }, e.token_name))
      : null,
    cell("Actor", e.actor),
    cell("Reason", e.reason || h("span", { class: "muted" }, "—")))));
}

export async function render(view, ctx) {
  const title = h("h1", { tabindex: "-1" }, "Audit");
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const tbody = h("tbody", { id: "audit-rows" });
  const more = h("button", { type: "button", id: "audit-more", hidden: true }, "Older events");
  replace(view,
    h("div", { class: "view-head" }, title),
    h("p", { class: "muted" }, "Every token created, imported, revoked or deleted, newest first: when, by whom (the admin client's address), and why."),
    error,
    eventsTable([], { body: tbody }),
    h("div", { class: "pager" }, more));
  document.title = "Audit · tollgate";
  title.focus();

  let before = null;
  async function load() {
    more.disabled = true;
    try {
      const { events } = await api.audit({ limit: String(PAGE), before });
      if (!ctx.isCurrent()) return;
      showError(error, "");
      if (before === null && events.length === 0) {
        tbody.append(h("tr", {}, h("td", { colspan: 5, class: "empty" }, "No events yet.")));
      }
      appendEvents(tbody, events, true);
      before = events.length ? String(events[events.length - 1].seq) : before;
      more.hidden = events.length < PAGE;
    } catch (e) {
      if (ctx.isCurrent()) showError(error, describe(e));
    } finally {
      more.disabled = false;
    }
  }
  more.addEventListener("click", load);
  await load();
}
