// The admin API client. The admin token lives in sessionStorage only (this tab, gone when it
// closes) and travels only as `Authorization: Bearer` to this origin's /api/.

const KEY = "tollgate.admin-token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function token() {
  return sessionStorage.getItem(KEY);
}

export function signOut() {
  sessionStorage.removeItem(KEY);
}

let onUnauthorized = () => {};

/** Called when the API refuses the stored admin token (it was changed, or is wrong). */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

/** Checks `candidate` against the API; keeps it only when the API accepts it. */
export async function signIn(candidate) {
  await request("GET", "/api/v1/tokens?limit=1", undefined, candidate);
  sessionStorage.setItem(KEY, candidate);
}

/** One API call; resolves to the JSON answer (or null for 204), rejects with an ApiError. */
export async function request(method, path, body, adminToken = token()) {
  const headers = { Accept: "application/json" };
  if (adminToken) headers.Authorization = `Bearer ${adminToken}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
      redirect: "error",
    });
  } catch (e) {
    throw new ApiError(0, "tollgate's admin API cannot be reached. Is tollgate running?");
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch (e) {
    data = null;
  }
  if (!response.ok) {
    const message = (data && typeof data.error === "string" && data.error) ||
      `the admin API answered ${response.status}`;
    const error = new ApiError(response.status, message);
    if (response.status === 401 && adminToken === token() && token()) onUnauthorized(error);
    throw error;
  }
  return data;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}

export const api = {
  list: (params) => request("GET", `/api/v1/tokens${query(params)}`),
  get: (id) => request("GET", `/api/v1/tokens/${encodeURIComponent(id)}`),
  create: (body) => request("POST", "/api/v1/tokens", body),
  revoke: (id, reason) =>
    request("POST", `/api/v1/tokens/${encodeURIComponent(id)}/revoke`, reason ? { reason } : {}),
  remove: (id) => request("DELETE", `/api/v1/tokens/${encodeURIComponent(id)}`),
  revokeMany: (ids, reason) =>
    request("POST", "/api/v1/tokens/revoke", reason ? { ids, reason } : { ids }),
  removeMany: (ids) => request("POST", "/api/v1/tokens/delete", { ids }),
  audit: (params) => request("GET", `/api/v1/audit${query(params)}`),
};

/** The sentence to show for a refusal, with the status when it helps. */
export function describe(error) {
  if (!(error instanceof ApiError)) return `Something went wrong: ${error}`;
  if (error.status === 0) return error.message;
  return `The admin API refused this (${error.status}): ${error.message}`;
}
