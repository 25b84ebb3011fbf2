// One job, live: its record (GET /jobs/{id}) refreshed as its events arrive over SSE
// (GET /jobs/{id}/events, read with fetch() so the key stays in a header), cancel, the
// publish gate's decision, a link to the version it published, and its report's plots.

import { api, enc, headers } from "../api.js";
import { badge, scores, showError } from "../common.js";
import { fmtTime, h, replace } from "../dom.js";
import { lines, reportPlots } from "../plots.js";
import { eventStream } from "../sse.js";
import { STATUS_CLASS } from "./jobs.js";

const TERMINAL = ["succeeded", "failed", "cancelled"];
const MAX_LOG = 200;

export function render(main, id) {
  const abort = new AbortController();
  const alive = { on: true, lastId: null, job: null, refreshing: null, artifacts: false };
  const head = h("div", { id: "job-head" });
  const progress = h("div", { id: "job-progress" });
  const decision = h("div", { id: "job-decision" });
  const curves = h("div", { id: "job-curves" });
  const plots = h("div", { id: "job-plots" });
  const log = h("ol", { id: "job-events", class: "events" });
  main.append(h("p", {}, h("a", { href: "#/jobs" }, "\u2190 Jobs")), h("h1", {}, "Job ", h("code", {}, id)), head, progress, decision,
    curves, plots, h("h2", {}, "Events"), log);

  async function refresh() {
    try {
      const job = await api(`/jobs/${enc(id)}`, { signal: abort.signal });
      if (!alive.on) return;
      alive.job = job;
      show(job);
    } catch (err) {
      if (alive.on) showError(head, err);
    }
  }

  function soon() { // one record read per burst of events
    if (!alive.refreshing) alive.refreshing = setTimeout(() => { alive.refreshing = null; refresh(); }, 300);
  }

  function show(job) {
    const cancel = TERMINAL.includes(job.status) ? null : h("button", { type: "button", id: "job-cancel", class: "danger", onclick: async (e) => {
      e.target.disabled = true;
      try { show(await api(`/jobs/${enc(id)}/cancel`, { method: "POST" })); } catch (err) { showError(decision, err); }
    } }, job.cancel_requested ? "Cancelling\u2026" : "Cancel");
    replace(head, h("dl", { class: "facts" },
      h("dt", {}, "Status"), h("dd", {}, h("span", { id: "job-status", class: `badge ${STATUS_CLASS[job.status] || "idle"}` }, job.status), " ", cancel),
      h("dt", {}, "Task"), h("dd", {}, h("a", { href: `#/task/${enc(job.task)}` }, job.task)),
      h("dt", {}, "Created"), h("dd", {}, fmtTime(job.created_at)),
      h("dt", {}, "Learning rate"), h("dd", {}, job.learning_rate != null ? String(job.learning_rate) : "auto (not chosen yet)"),
      h("dt", {}, "Attempts"), h("dd", {}, `${job.attempts ?? 0} of ${job.max_attempts ?? "?"}`),
      job.error ? [h("dt", {}, "Error"), h("dd", { class: "error", id: "job-error" }, job.error)] : null));
    const p = job.progress || {};
    const total = p.total_steps || p.epochs || 0;
    const done = p.total_steps ? p.step || 0 : p.epoch || 0;
    replace(progress, total ? [h("progress", { id: "job-progress-bar", max: total, value: Math.min(done, total) }),
      h("span", { class: "muted" }, ` epoch ${p.epoch ?? 0}/${p.epochs ?? "?"}, step ${p.step ?? 0}/${p.total_steps ?? "?"}`,
        p.eta_s != null && !TERMINAL.includes(job.status) ? `, about ${Math.round(p.eta_s)} s left` : "")] : null);
    showDecision(job);
    const m = job.metrics || [];
    const names = [...new Set(m.flatMap((e) => Object.keys(e.validation || {})))];
    replace(curves, m.length ? h("div", { class: "plots" },
      lines([{ name: "train loss", points: m.map((e) => [e.epoch, e.train_loss]) }], { title: "training loss", xLabel: "epoch" }),
      lines(names.map((n) => ({ name: n, points: m.map((e) => [e.epoch, (e.validation || {})[n]]) })), { title: "validation", xLabel: "epoch" })) : null);
    if (TERMINAL.includes(job.status) && !alive.artifacts) {
      alive.artifacts = true;
      showArtifacts(plots, id, abort.signal);
    }
  }

  function showDecision(job) {
    const r = job.result;
    if (!r) { replace(decision); return; }
    const gate = r.decision || {};
    const facts = Object.entries(gate).filter(([, v]) => v == null || typeof v !== "object");
    replace(decision, h("div", { class: "card", id: "job-result" }, h("h3", {}, "Publish gate"),
      h("p", { id: "job-published" }, r.published ? "Published as " : "Not published",
        r.published && r.version != null ? h("a", { id: "job-version-link", href: `#/task/${enc(job.task)}` }, `${job.task} v${r.version}`) : null),
      facts.length ? h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])) : null,
      compared(r.scores || gate.scores),
      r.validation || r.test ? h("p", {}, `validation: ${scores(r.validation)}`, h("br"), `test: ${scores(r.test)}`) : null));
  }

  function logEvent(ev) {
    let data;
    try { data = JSON.parse(ev.data); } catch { data = { type: ev.type, message: ev.data }; }
    log.append(h("li", { class: `ev ${data.level || "info"}` }, h("span", { class: "muted" }, fmtTime(data.created_at), " ", data.type || ev.type, " "), data.message || ""));
    while (log.children.length > MAX_LOG) log.firstChild.remove();
  }

  async function follow() {
    await refresh();
    while (alive.on && !(alive.job && TERMINAL.includes(alive.job.status))) {
      try {
        for await (const ev of eventStream(`/jobs/${enc(id)}/events?stream=true`, { lastEventId: alive.lastId, signal: abort.signal })) {
          if (ev.id != null) alive.lastId = ev.id;
          logEvent(ev);
          soon();
        }
      } catch (err) {
        if (!alive.on) return;
        if (err && err.status === 404) { showError(head, err); return; }
      }
      await refresh();
      if (alive.on) await new Promise((r) => setTimeout(r, 1000)); // the stream ended or broke: again, from the last event
    }
  }
  follow();
  return () => { alive.on = false; abort.abort(); clearTimeout(alive.refreshing); };
}

// The if_better comparison: {new: {metric: x}, current: {...}, current_version} as a table.
function compared(s) {
  if (!s || !s.new) return null;
  const metrics = Object.keys(s.new).filter((m) => typeof s.new[m] === "number");
  const current = s.current || {};
  return h("table", { class: "grid", id: "job-gate-scores" },
    h("thead", {}, h("tr", {}, h("th", {}, "metric (this job's validation split)"), h("th", {}, "new set"),
      h("th", {}, s.current_version != null ? `current v${s.current_version}` : "current"))),
    h("tbody", {}, metrics.map((m) => h("tr", {}, h("td", {}, m), h("td", { class: "num" }, s.new[m].toFixed(4)),
      h("td", { class: "num" }, typeof current[m] === "number" ? current[m].toFixed(4) : "\u2014")))));
}

async function showArtifacts(el, id, signal) {
  try {
    const list = await api(`/jobs/${enc(id)}/artifacts`, { signal });
    const names = (list.data || []).map((a) => a.name);
    const out = [];
    if (names.includes("report.json")) out.push(reportPlots(await api(`/jobs/${enc(id)}/artifacts/report.json`, { signal })));
    const pngs = h("details", {}, h("summary", {}, "The worker's PNG plots"));
    for (const name of names.filter((n) => n.endsWith(".png"))) {
      const response = await fetch(`/jobs/${enc(id)}/artifacts/${enc(name)}`, { headers: headers(), credentials: "omit", signal });
      if (!response.ok) continue;
      const url = URL.createObjectURL(await response.blob()); // blob: so the key never goes into an <img> URL
      pngs.append(h("figure", {}, h("img", { src: url, alt: name, class: "artifact" }), h("figcaption", {}, name)));
    }
    replace(el, h("h2", {}, "Report"), out, pngs.children.length > 1 ? pngs : null);
  } catch (err) {
    if (!signal.aborted) showError(el, err);
  }
}
