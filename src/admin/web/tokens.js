// The API Tokens list: search by name (on the server), filter by status, pages of 50 with the
// API's cursor, a checkbox per row and a bulk actions bar for revoke and delete.

import { api, describe } from "./api.js";
import { badge, confirmAction, h, notify, permissionList, plural, relative, replace, showError, time } from "./dom.js";
import * as create from "./create.js";

const PAGE = 50;
const ID_SHAPE = /^[0-9abcdefghjkmnpqrstvwxyz]{16}$/;
/** Anything carrying a token, wherever it sits in what was pasted ("Authorization: Bearer …"). */
const SECRET_SHAPE = /tc-apiv1_/i;

/** The selection survives paging and filtering until a bulk action or "Clear". */
const selection = new Map(); // id → {name, status}

export async function render(view, params, ctx) {
  const state = {
    q: params.get("q") || "",
    status: params.get("status") || "",
    cursors: [null], // cursors[i] is the `after` of page i
    page: 0,
    rows: [],
    next: null,
  };
  // A secret pasted into a link never reaches the server, and leaves the address bar.
  const secretInUrl = SECRET_SHAPE.test(state.q);
  if (secretInUrl) state.q = "";

  const title = h("h1", { tabindex: "-1" }, "API Tokens");
  const createButton = h("button", { type: "button", class: "primary", id: "create-token" }, "Create token");
  const search = h("input", {
    id: "search", type: "search", value: state.q, autocomplete: "off", spellcheck: "false",
    placeholder: "Search by name", "aria-describedby": "search-help",
  });
  const statusSelect = h("select", { id: "status-filter" },
    [["", "All statuses"], ["active", "Active"], ["revoked", "Revoked"], ["expired", "Expired"]]
      .map(([value, label]) => h("option", { value, selected: value === state.status }, label)));
  statusSelect.value = state.status;
  const searchHelp = h("p", { id: "search-help", class: "muted small" },
    "Type to search; press / to jump here.");
  const idHit = h("p", { id: "id-hit", hidden: true });
  const listError = h("p", { id: "list-error", class: "error", role: "alert", hidden: true });
  const bulkCount = h("span", { id: "bulk-count" });
  const bulkRevoke = h("button", { type: "button", id: "bulk-revoke", class: "danger-outline" }, "Revoke");
  const bulkDelete = h("button", { type: "button", id: "bulk-delete", class: "danger-outline" }, "Delete");
  const bulkClear = h("button", { type: "button", id: "bulk-clear", class: "ghost" }, "Clear selection");
  const bulkBar = h("div", { id: "bulk-bar", class: "bulk-bar", role: "region", "aria-label": "Bulk actions", hidden: true },
    bulkCount, h("div", { class: "bulk-actions" }, bulkRevoke, bulkDelete, bulkClear));
  const bulkResult = h("div", { id: "bulk-result", class: "result", role: "status", "aria-live": "polite", hidden: true });
  const selectAll = h("input", { type: "checkbox", id: "select-all", "aria-label": "Select every token on this page" });
  const tbody = h("tbody", { id: "token-rows" });
  const table = h("table", { class: "tokens", id: "token-table" },
    h("caption", { class: "visually-hidden" }, "API tokens, newest first"),
    h("thead", {}, h("tr", {},
      h("th", { scope: "col", class: "check" }, selectAll,
        h("label", { for: "select-all", class: "select-all-label" }, "Select all on this page")),
      ["Name", "Hint", "Status", "Permissions", "Created", "Expires", "Last used", "Revoked at"]
        .map((label) => h("th", { scope: "col" }, label)))),
    tbody);
  const prev = h("button", { type: "button", id: "page-prev" }, "Previous");
  const next = h("button", { type: "button", id: "page-next" }, "Next");
  const pageLabel = h("span", { id: "page-label", class: "muted" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages" }, prev, pageLabel, next);

  replace(view,
    h("div", { class: "view-head" }, title, createButton),
    h("div", { class: "toolbar" },
      h("div", { class: "field grow" }, h("label", { for: "search" }, "Search by name"), search, searchHelp),
      h("div", { class: "field" }, h("label", { for: "status-filter" }, "Status"), statusSelect)),
    idHit, listError, bulkBar, bulkResult,
    h("div", { class: "table-wrap" }, table),
    pager);
  document.title = "API Tokens · tollgate";
  title.focus();
  if (secretInUrl) syncUrl();

  function syncUrl() {
    const q = new URLSearchParams();
    if (state.q) q.set("q", state.q);
    if (state.status) q.set("status", state.status);
    const s = q.toString();
    history.replaceState(null, "", s ? `#/tokens?${s}` : "#/tokens");
  }

  function syncBulk() {
    bulkBar.hidden = selection.size === 0;
    bulkCount.textContent = `${plural(selection.size, "token")} selected`;
    const onPage = state.rows.filter((r) => selection.has(r.id)).length;
    selectAll.checked = state.rows.length > 0 && onPage === state.rows.length;
    selectAll.indeterminate = onPage > 0 && onPage < state.rows.length;
    selectAll.disabled = state.rows.length === 0;
    for (const box of tbody.querySelectorAll("input[type=checkbox]")) {
      box.checked = selection.has(box.dataset.id);
      box.closest("tr").classList.toggle("selected", box.checked);
    }
  }

  function row(r) {
    const box = h("input", {
      type: "checkbox", class: "row-check", dataset: { id: r.id }, "aria-label": `Select ${r.name}`,
      onchange: () => {
        if (box.checked) selection.set(r.id, { name: r.name, status: r.status });
        else selection.delete(r.id);
        syncBulk();
      },
    });
    const cell = (label, ...content) => h("td", { dataset: { label } }, ...content);
    return h("tr", { dataset: { id: r.id } },
      h("td", { class: "check" }, box),
      cell("Name", h("a", { href: `#/tokens/${r.id}`, class: "token-name" }, r.name),
        r.description ? h("div", { class: "muted small desc" }, r.description) : null),
      cell("Hint", h("code", {}, r.hint)),
      cell("Status", badge(r.status)),
      cell("Permissions", permissionList(r.permissions)),
      cell("Created", time(r.created_at)),
      cell("Expires", time(r.expires_at, "Never")),
      cell("Last used", r.last_used_at
        ? h("span", { title: r.last_used_at }, relative(r.last_used_at))
        : h("span", { class: "muted" }, "Never")),
      cell("Revoked at", time(r.revoked_at)));
  }

  async function load() {
    replace(tbody, h("tr", {}, h("td", { colspan: 9, class: "muted" }, "Loading…")));
    showError(listError, "");
    const params = { limit: String(PAGE), status: state.status, name: state.q, after: state.cursors[state.page] };
    let answer;
    try {
      answer = await api.list(params);
    } catch (e) {
      if (!ctx.isCurrent()) return;
      showError(listError, describe(e));
      replace(tbody);
      return;
    }
    if (!ctx.isCurrent()) return;
    // Stale answers from an earlier search are dropped.
    if (params.name !== state.q || params.status !== state.status) return;
    state.rows = answer.tokens;
    state.next = answer.next;
    if (state.rows.length === 0) {
      const empty = state.q || state.status
        ? "No token matches this search."
        : "No tokens yet. Create one for each agent; agents send it as “Authorization: Bearer tc-apiv1_…”.";
      replace(tbody, h("tr", {}, h("td", { colspan: 9, class: "empty" }, empty)));
    } else {
      replace(tbody, state.rows.map(row));
    }
    prev.disabled = state.page === 0;
    next.disabled = !state.next;
    pageLabel.textContent = `Page ${state.page + 1}`;
    syncBulk();
  }

  async function lookupId(q) {
    idHit.hidden = true;
    if (!ID_SHAPE.test(q)) return;
    try {
      const r = await api.get(q);
      if (!ctx.isCurrent() || state.q !== q) return;
      replace(idHit, "Token with this id: ", h("a", { href: `#/tokens/${r.id}` }, r.name), " ", badge(r.status));
      idHit.hidden = false;
    } catch (e) {
      // Not an id after all: the name search below says what matched.
    }
  }

  let debounce;
  const onSearch = () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      const q = search.value.trim();
      if (SECRET_SHAPE.test(q)) {
        // A pasted secret must not travel to the server, the URL or the history.
        search.value = "";
        showError(listError, "That looks like a token secret. tollgate never stores secrets, so " +
          "it cannot search by one; search by name, or compare the hint (its last four characters).");
        return;
      }
      if (q === state.q) return;
      state.q = q;
      state.cursors = [null];
      state.page = 0;
      syncUrl();
      lookupId(q);
      load();
    }, 250);
  };
  // "input" while typing; "change" too, for a field emptied by other means than keys.
  search.addEventListener("input", onSearch);
  search.addEventListener("change", onSearch);
  statusSelect.addEventListener("change", () => {
    state.status = statusSelect.value;
    state.cursors = [null];
    state.page = 0;
    syncUrl();
    load();
  });
  prev.addEventListener("click", () => {
    if (state.page === 0) return;
    state.page -= 1;
    load();
  });
  next.addEventListener("click", () => {
    if (!state.next) return;
    state.cursors[state.page + 1] = state.next;
    state.page += 1;
    load();
  });
  selectAll.addEventListener("change", () => {
    for (const r of state.rows) {
      if (selectAll.checked) selection.set(r.id, { name: r.name, status: r.status });
      else selection.delete(r.id);
    }
    syncBulk();
  });
  bulkClear.addEventListener("click", () => {
    selection.clear();
    syncBulk();
  });
  createButton.addEventListener("click", () => create.open((record) => {
    notify(`Created token “${record.name}”.`);
    state.cursors = [null];
    state.page = 0;
    load();
  }));

  function namesOf(entries) {
    const shown = entries.slice(0, 8).map(([, t]) => h("li", {}, t.name));
    if (entries.length > 8) shown.push(h("li", { class: "muted" }, `and ${entries.length - 8} more`));
    return h("ul", { class: "names" }, shown);
  }

  function nameOf(id) {
    return selection.get(id)?.name ?? id;
  }

  bulkRevoke.addEventListener("click", async () => {
    const entries = [...selection.entries()];
    const n = entries.length;
    const already = entries.filter(([, t]) => t.status === "revoked").length;
    const answer = await confirmAction({
      title: `Revoke ${plural(n, "token")}?`,
      body: [
        namesOf(entries),
        `${n === 1 ? "It is" : "Each is"} refused on ${n === 1 ? "its" : "its own"} very next request. ` +
          "The records stay in this list, marked Revoked with the time and reason, for the audit trail.",
        "Revocation is permanent: a revoked token cannot be reactivated. To restore access, create a new token.",
        already ? `${plural(already, "token")} of these ${already === 1 ? "is" : "are"} already revoked and keep${already === 1 ? "s" : ""} ${already === 1 ? "its" : "their"} first revoke time.` : null,
      ].filter(Boolean),
      reason: true,
      confirmLabel: `Revoke ${plural(n, "token")}`,
      describeError: describe,
      run: (reason) => api.revokeMany(entries.map(([id]) => id), reason),
    });
    if (!answer) return;
    const lines = [
      `Revoked ${plural(answer.revoked.length, "token")}.`,
      `${answer.already_revoked.length} already revoked.`,
      answer.not_found.length
        ? `Not found (deleted meanwhile?): ${answer.not_found.map(nameOf).join(", ")}.`
        : "None missing.",
    ];
    finishBulk(lines.join(" "));
  });

  bulkDelete.addEventListener("click", async () => {
    const entries = [...selection.entries()];
    const n = entries.length;
    const answer = await confirmAction({
      title: `Delete ${plural(n, "token")}?`,
      body: [
        namesOf(entries),
        `${n === 1 ? "Its record is" : "Their records are"} removed for good: gone from this list, ` +
          `and ${n === 1 ? "the token is" : "each token is"} refused on its very next request. ` +
          "The audit trail keeps a “deleted” entry with the name.",
        "This cannot be undone. To keep a record of the token, revoke it instead.",
      ],
      confirmLabel: `Delete ${plural(n, "token")}`,
      describeError: describe,
      run: () => api.removeMany(entries.map(([id]) => id)),
    });
    if (!answer) return;
    const lines = [
      `Deleted ${plural(answer.deleted.length, "token")}.`,
      answer.not_found.length
        ? `Not found (already deleted?): ${answer.not_found.map(nameOf).join(", ")}.`
        : "None missing.",
    ];
    finishBulk(lines.join(" "));
  });

  function finishBulk(text) {
    selection.clear();
    bulkResult.textContent = text;
    bulkResult.hidden = false;
    load().then(() => {
      // A page emptied by deletion steps back to the previous one.
      if (state.rows.length === 0 && state.page > 0) {
        state.page -= 1;
        load();
      }
    });
  }

  await load();
  if (state.q) lookupId(state.q);
}

// "/" jumps to the search box from anywhere on the list, unless typing in a field already.
document.addEventListener("keydown", (event) => {
  if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target;
  if (target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement ||
    target instanceof HTMLSelectElement || document.querySelector("dialog[open]")) return;
  const search = document.getElementById("search");
  if (search) {
    event.preventDefault();
    search.focus();
  }
});
