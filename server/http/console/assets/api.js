// The public HTTP API, called with fetch(): the key (sessionStorage, this tab only) goes in an
// Authorization header, never in a URL or a cookie (credentials: "omit" sends no cookie).

const KEY = "bitfit.key";

export const key = {
  get: () => sessionStorage.getItem(KEY) || "",
  set: (value) => sessionStorage.setItem(KEY, value),
  forget: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, body) {
    super(`HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export function headers(extra) {
  const out = { ...(extra || {}) };
  const k = key.get();
  if (k) out.Authorization = `Bearer ${k}`;
  return out;
}

// `path` is always one of ours ("/tasks", ...), built with encodeURIComponent: same origin.
export async function api(path, { method = "GET", json, form, extraHeaders, raw = false, signal } = {}) {
  const h = headers(extraHeaders);
  let body;
  if (json !== undefined) {
    body = JSON.stringify(json);
    h["Content-Type"] = "application/json";
  } else if (form) {
    body = form;
  }
  const response = await fetch(path, { method, headers: h, body, signal, credentials: "omit", cache: "no-store", redirect: "error" });
  if (!response.ok) throw new ApiError(response.status, await bodyOf(response));
  if (raw) return response;
  if (response.status === 204) return null;
  return bodyOf(response);
}

async function bodyOf(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export function q(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v != null && v !== "") u.set(k, String(v));
  const s = u.toString();
  return s ? `?${s}` : "";
}

export const enc = encodeURIComponent;

// Whether the server has a route (the jobs API may not be there): a 404 with no JSON error
// body of ours, or the "not_found" of an unknown path.
export function missingRoute(err) {
  return err instanceof ApiError && (err.status === 404 || err.status === 405) &&
    !(err.body && err.body.error && /job|file/.test(err.body.error.code || ""));
}
