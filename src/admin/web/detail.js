// One token: an Overview tab (every field and the token's audit events) and a Manage tab (Revoke
// and Delete, each behind a confirmation that names the token and says what will happen).

import { ApiError, api, describe } from "./api.js";
import { badge, confirmAction, h, notify, permissionList, relative, replace, time } from "./dom.js";
import { eventsTable } from "./audit.js";

export async function render(view, id, ctx, tab = "overview") {
  replace(view, h("p", { class: "muted" }, "Loading…"));
  let record = null;
  let events = [];
  let problem = null;
  const [recordResult, eventsResult] = await Promise.allSettled([
    api.get(id),
    api.audit({ token_id: id, limit: "100" }),
  ]);
  if (!ctx.isCurrent()) return;
  if (recordResult.status === "fulfilled") record = recordResult.value;
  else if (!(recordResult.reason instanceof ApiError && recordResult.reason.status === 404)) {
    problem = describe(recordResult.reason);
  }
  if (eventsResult.status === "fulfilled") events = eventsResult.value.events;
  else if (!problem && record) problem = describe(eventsResult.reason);

  const crumbs = h("nav", { class: "crumbs", "aria-label": "Breadcrumb" },
    h("a", { href: "#/tokens" }, "API Tokens"), h("span", { "aria-hidden": "true" }, " › "),
    h("span", { "aria-current": "page" }, record ? record.name : id));

  if (!record) {
    const title = h("h1", { tabindex: "-1" }, problem ? "Cannot show this token" : "Token not found");
    const gone = events.find((e) => e.action === "deleted");
    replace(view, crumbs, title,
      problem ? h("p", { class: "error", role: "alert" }, problem)
        : h("p", {}, gone
          ? `“${gone.token_name}” was deleted on ${gone.at.replace("T", " ").replace("Z", " UTC")}; its record is gone. Its history:`
          : "No token has this id."),
      events.length ? eventsTable(events, { linkTokens: false }) : null);
    document.title = "Token not found · tollgate";
    title.focus();
    return;
  }

  document.title = `${record.name} · API Tokens · tollgate`;
  const title = h("h1", { tabindex: "-1", id: "detail-title" }, record.name, " ", badge(record.status));

  const field = (label, ...value) => [h("dt", {}, label), h("dd", {}, ...value)];
  const overview = h("div", {},
    h("dl", { class: "fields", id: "fields" },
      field("Name", record.name),
      field("ID", h("code", {}, record.id)),
      field("Description", record.description || h("span", { class: "muted" }, "None")),
      field("Hint", h("code", {}, record.hint)),
      field("Status", badge(record.status)),
      field("Permissions", permissionList(record.permissions)),
      field("Created", time(record.created_at)),
      field("Expires", time(record.expires_at, "Never"),
        record.expires_at ? h("span", { class: "muted" }, ` (${relative(record.expires_at)})`) : null),
      field("Last used", time(record.last_used_at, "Never"),
        record.last_used_at ? h("span", { class: "muted" }, ` (${relative(record.last_used_at)})`) : null),
      field("Revoked at", time(record.revoked_at, "Not revoked")),
      field("Revoke reason", record.revoke_reason || h("span", { class: "muted" }, record.revoked_at ? "None given" : "—"))),
    h("h2", {}, "Activity"),
    problem ? h("p", { class: "error", role: "alert" }, problem) : null,
    events.length ? eventsTable(events, { linkTokens: false }) : h("p", { class: "muted" }, "No events."));

  const revokeSection = record.status === "revoked"
    ? h("section", { class: "manage-box", "aria-labelledby": "revoked-title", id: "revoked-box" },
      h("h2", { id: "revoked-title" }, "Revoked"),
      h("p", {}, "Revoked at ", time(record.revoked_at), record.revoke_reason ? `, reason: “${record.revoke_reason}”.` : ", no reason given."),
      h("p", {}, "Revocation is permanent: this token cannot be reactivated. To restore access, create a new token."))
    : h("section", { class: "manage-box", "aria-labelledby": "revoke-title" },
      h("h2", { id: "revoke-title" }, "Revoke"),
      h("p", {}, "Revoking refuses this token on its very next request. The record stays, marked Revoked with the time and your reason, for the audit trail. Revocation is permanent."),
      h("button", { type: "button", class: "danger", id: "revoke-button", onclick: revoke }, "Revoke token…"));
  const deleteSection = h("section", { class: "manage-box", "aria-labelledby": "delete-title" },
    h("h2", { id: "delete-title" }, "Delete"),
    h("p", {}, "Deleting removes the record for good: the token leaves the list and is refused on its very next request. The audit trail keeps a “deleted” entry with its name."),
    h("button", { type: "button", class: "danger-outline", id: "delete-button", onclick: remove }, "Delete token…"));
  const manage = h("div", {}, revokeSection, deleteSection);

  const tabs = [["overview", "Overview", overview], ["manage", "Manage", manage]];
  const tabButtons = tabs.map(([key, label]) => h("button", {
    type: "button", role: "tab", id: `tab-${key}`, "aria-controls": `panel-${key}`,
  }, label));
  const panels = tabs.map(([key, , content]) => h("div", {
    role: "tabpanel", id: `panel-${key}`, "aria-labelledby": `tab-${key}`, tabindex: "0",
  }, content));
  function select(key, focus = false) {
    tabs.forEach(([k], i) => {
      const on = k === key;
      tabButtons[i].setAttribute("aria-selected", String(on));
      tabButtons[i].tabIndex = on ? 0 : -1;
      panels[i].hidden = !on;
      if (on && focus) tabButtons[i].focus();
    });
  }
  tabButtons.forEach((button, i) => {
    button.addEventListener("click", () => select(tabs[i][0]));
    // The WAI-ARIA tabs pattern: arrows move between tabs, Home and End to the ends.
    button.addEventListener("keydown", (event) => {
      const moves = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 };
      if (!(event.key in moves)) return;
      event.preventDefault();
      select(tabs[(moves[event.key] + tabs.length) % tabs.length][0], true);
    });
  });
  select(tab);

  replace(view, crumbs, h("div", { class: "view-head" }, title),
    h("p", { class: "muted" }, h("code", {}, record.hint), record.description ? ` · ${record.description}` : ""),
    h("div", { role: "tablist", class: "tabs", "aria-label": "Token" }, tabButtons),
    panels);
  title.focus();

  async function revoke() {
    const done = await confirmAction({
      title: `Revoke “${record.name}”?`,
      body: [
        `“${record.name}” (${record.hint}) will be refused on its very next request, by every process serving this store.`,
        "Its record stays in the list, marked Revoked with the time and the reason below, for the audit trail.",
        "Revocation is permanent: the token cannot be reactivated. To restore access, create a new token.",
      ],
      reason: true,
      confirmLabel: "Revoke token",
      describeError: describe,
      run: (reason) => api.revoke(record.id, reason),
    });
    if (!done) return;
    notify(`Revoked “${record.name}”: it is refused from its next request on.`);
    if (ctx.isCurrent()) render(view, id, ctx, "manage");
  }

  async function remove() {
    const done = await confirmAction({
      title: `Delete “${record.name}”?`,
      body: [
        `The record of “${record.name}” (${record.hint}) will be removed for good: it leaves the list, and the token is refused on its very next request.`,
        "The audit trail keeps a “deleted” entry with its name. This cannot be undone; to keep the record, revoke instead.",
      ],
      confirmLabel: "Delete token",
      describeError: describe,
      run: () => api.remove(record.id).then(() => true),
    });
    if (!done) return;
    notify(`Deleted “${record.name}”.`, { navigating: true });
    location.hash = "#/tokens";
  }
}
