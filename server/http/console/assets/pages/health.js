// Health: readiness (GET /readyz, open), the store and its sync, resident vs catalog counts,
// evictions and cold loads (GET /stats), every 5 s.

import { api } from "../api.js";
import { badge, poller, showError } from "../common.js";
import { h, replace } from "../dom.js";

export function render(main) {
  const ready = h("div", { id: "health-ready" });
  const stats = h("div", { id: "health-stats" });
  main.append(h("h1", {}, "Health"), ready, stats);
  let before = null;
  return poller(async () => {
    try {
      const r = await api("/readyz");
      replace(ready, h("div", { class: "card" }, h("h3", {}, "Readiness ", badge(r.status, r.status === "ready" ? "good" : "warn")),
        facts([["Store", r.store], ["Store writable", r.store_writable ? "yes" : "no (mutations answer 503)"], ["Generation applied", r.generation],
          ["Backbone", `${r.backbone} (${r.model_type}) on ${r.device}, ${r.dtype}`], ["Loading", r.load], ["Queue", `${r.queue_rows} rows`],
          ["Unhealthy tasks", r.unhealthy_count]]),
        Object.keys(r.unhealthy_tasks || {}).length ? h("ul", { class: "unhealthy" }, Object.entries(r.unhealthy_tasks).map(([n, why]) => h("li", {}, h("b", {}, n), `: ${why}`))) : null));
    } catch (err) {
      showError(ready, err);
    }
    try {
      const s = await api("/stats");
      const rate = (k) => before && s.clock_s > before.clock_s ? ((s[k] - before[k]) / (s.clock_s - before.clock_s)).toFixed(2) : "\u2026";
      replace(stats, h("div", { class: "card" }, h("h3", {}, "Residency"),
        facts([["Resident / catalog", `${s.resident_tasks.toLocaleString()} of ${s.catalog_tasks.toLocaleString()} tasks`],
          ["Slots", `${s.slots - s.free_slots} used of ${s.slots}`], ["Pinned versions", s.pinned_versions],
          ["Evictions", `${s.evictions} (${rate("evictions")}/s)`], ["Cold loads", `${s.cold_loads} (${rate("cold_loads")}/s), p50 ${s.cold_load_p50_ms ?? "\u2014"} ms`],
          ["Hits / misses", `${s.hits} / ${s.misses}`], ["Load failures", s.load_failures],
          ["Store sync", s.sync_ok ? "following" : `behind: ${s.sync_problem}`]])));
      before = s;
    } catch (err) {
      showError(stats, err);
    }
  }, 5000);
}

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.map(([k, v]) => [h("dt", {}, k), h("dd", { dataset: { fact: k } }, v == null ? "" : String(v))]));
}
