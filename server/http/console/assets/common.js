// What several pages share: a poll that stops when the page is left, the API error shown
// in place (with a hint to type a key on 401/403), and a task's state in words.

import { ApiError } from "./api.js";
import { errorBox, h, replace } from "./dom.js";

export function poller(fn, ms) {
  let stopped = false, timer = null;
  const tick = async () => {
    if (stopped) return;
    try { await fn(); } catch { /* shown by fn; the next tick tries again */ }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

export function showError(el, err) {
  const box = errorBox(err);
  if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
    box.append(" \u2014 type an API key in the box at the top (it is kept in this tab only).");
  }
  replace(el, box);
  return box;
}

// The listing's state (server/catalog/views.py) as the console words it.
export function stateOf(task) {
  if (task.reason || task.state === "unservable") return { word: "unhealthy", cls: "bad", reason: task.reason || "" };
  if (task.state === "resident") return { word: "resident", cls: "good" };
  if (task.state === "loading") return { word: "loading", cls: "warn" };
  return { word: "not resident", cls: "idle" };
}

export function badge(word, cls) {
  return h("span", { class: `badge ${cls}` }, word);
}

// A validation/test score dict -> "accuracy 0.91, macro_f1 0.90".
export function scores(dict) {
  if (!dict || typeof dict !== "object") return "";
  return Object.entries(dict).filter(([, v]) => typeof v === "number").map(([k, v]) => `${k} ${v.toFixed(4)}`).join(", ");
}
