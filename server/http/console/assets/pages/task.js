// A task: its versions with their training records and scores (GET /tasks/{name}?version=N),
// the report's plots of the job that trained the live version (the jobs API, when the
// server has it), try it, replace by upload, roll back and delete (each confirmed in place).

import { api, enc, missingRoute, q } from "../api.js";
import { badge, scores, showError, stateOf } from "../common.js";
import { fmtBytes, fmtTime, h, replace } from "../dom.js";
import { lines, reportPlots } from "../plots.js";
import { uploadForm } from "./tasks.js";
import { tryIt } from "./tryit.js";

export function render(main, name) {
  const alive = { on: true };
  const head = h("div", { id: "task-head" });
  const versions = h("div", { id: "task-versions" });
  const report = h("div", { id: "task-report" });
  const tryBox = h("div", { id: "task-try" });
  const danger = h("div", { id: "task-danger" });
  main.append(h("p", {}, h("a", { href: "#/tasks" }, "\u2190 Tasks")), h("h1", { id: "task-name" }, name), head,
    h("h2", {}, "Try it"), tryBox, h("h2", {}, "Versions"), versions, h("h2", {}, "Training report"), report,
    h("h2", {}, "Change"), danger);

  async function load() {
    let info;
    try {
      info = await api(`/tasks/${enc(name)}`);
    } catch (err) {
      showError(head, err);
      return;
    }
    if (!alive.on) return;
    showHead(head, info, name);
    replace(tryBox, tryIt(info));
    showVersions(versions, info, load);
    showReport(report, info);
    if (!danger.firstChild) replace(danger, uploadForm(() => load(), name), deleteBox(name)); // kept: its answer stays shown
  }
  load();
  return () => { alive.on = false; };
}

async function showHead(el, info, name) {
  const rows = [["Live version", `v${info.version}`], ["Labels", info.labels.map((l) => h("span", { class: "label" }, l))],
    ["Problem", info.problem_type], ["Inputs", info.inputs], ["Size", fmtBytes(info.size_bytes)],
    ["Created", fmtTime(info.created_at)], ["Base model", info.base_model], ["sha256", h("code", {}, info.sha256.slice(0, 16))]];
  const state = h("dd", { id: "task-state" });
  replace(el, h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]), h("dt", {}, "State"), state));
  try {
    const page = await api(`/tasks${q({ limit: 1, prefix: name })}`);
    const t = page.tasks.find((x) => x.name === name);
    if (t) {
      const st = stateOf(t);
      replace(state, badge(st.word, st.cls), st.reason ? h("span", { class: "reason" }, ` ${st.reason}`) : null);
    }
  } catch (err) {
    showError(state, err);
  }
}

async function showVersions(el, info, reload) {
  replace(el, h("p", { class: "muted" }, "Loading versions\u2026"));
  const records = [];
  for (const v of [...info.versions].reverse()) {
    try {
      records.push(v === info.version ? info : await api(`/tasks/${enc(info.name)}${q({ version: v })}`));
    } catch (err) {
      records.push({ version: v, error: err });
    }
  }
  const body = h("tbody");
  for (const r of records) {
    const t = r.training || {};
    const action = r.version === info.version ? badge("live", "good") : confirmButton(`Roll back to v${r.version}`, `rollback-${r.version}`, async () => {
      await api(`/tasks/${enc(info.name)}/rollback`, { method: "POST", json: { version: r.version } });
      reload();
    });
    body.append(h("tr", { dataset: { version: r.version } },
      h("td", { class: "num" }, `v${r.version}`), h("td", {}, r.error ? String(r.error.status || r.error) : fmtTime(r.created_at)),
      h("td", {}, t.method || ""), h("td", { class: "num" }, t.epochs_run != null ? `${t.best_epoch ?? "?"}/${t.epochs_run}` : ""),
      h("td", { class: "num" }, t.lr != null ? Number(t.lr).toExponential(1) : ""), h("td", {}, scores(t.validation)),
      h("td", {}, scores(t.test)), h("td", {}, h("code", {}, (r.sha256 || "").slice(0, 12))), h("td", {}, action)));
  }
  const table = h("table", { class: "grid", id: "versions-table" },
    h("thead", {}, h("tr", {}, ["Version", "Created", "Method", "Best/epochs", "LR", "Validation", "Test", "sha256", ""].map((c) => h("th", {}, c)))), body);
  const metrics = [...new Set(records.flatMap((r) => Object.keys((r.training || {}).validation || {})))];
  const chart = metrics.length && records.length > 1
    ? lines(metrics.map((m) => ({ name: `validation ${m}`, points: records.map((r) => [r.version, ((r.training || {}).validation || {})[m]]) })),
      { title: "validation scores by version", xLabel: "version" })
    : null;
  replace(el, table, chart);
}

async function showReport(el, info) {
  replace(el, h("p", { class: "muted" }, "Looking for the job that trained this version\u2026"));
  try {
    const list = await api(`/jobs${q({ task: info.name, status: "succeeded", limit: 20 })}`);
    const jobs = list.data || [];
    const job = jobs.find((j) => j.result && j.result.version === info.version) || null;
    if (!job) {
      replace(el, h("p", { class: "muted" }, "No job of the jobs API published this version (it was uploaded or trained elsewhere); its training record is in the versions table."));
      return;
    }
    const report = await api(`/jobs/${enc(job.id)}/artifacts/report.json`);
    replace(el, h("p", {}, "From job ", h("a", { href: `#/job/${enc(job.id)}` }, job.id)), reportPlots(report));
  } catch (err) {
    if (missingRoute(err)) replace(el, h("p", { class: "muted" }, "This server has no jobs API, so no training report to draw."));
    else showError(el, err);
  }
}

// A button that asks once more in place (no browser dialog) before it acts.
export function confirmButton(text, id, action) {
  const box = h("span", { class: "confirm" });
  const first = h("button", { type: "button", id, class: "secondary" }, text);
  first.addEventListener("click", () => {
    const yes = h("button", { type: "button", id: `${id}-yes`, class: "danger" }, `Yes, ${text.toLowerCase()}`);
    const no = h("button", { type: "button", class: "secondary" }, "Cancel");
    yes.addEventListener("click", async () => {
      yes.disabled = true;
      try { await action(); } catch (err) { showError(box, err); }
    });
    no.addEventListener("click", () => replace(box, first));
    replace(box, yes, " ", no);
  });
  box.append(first);
  return box;
}

function deleteBox(name) {
  const typed = h("input", { id: "delete-confirm", type: "text", placeholder: "type the task name to confirm", spellcheck: false });
  const button = h("button", { id: "delete-button", type: "submit", class: "danger", disabled: true }, "Delete task and all its versions");
  const out = h("div", { class: "result" });
  typed.addEventListener("input", () => { button.disabled = typed.value !== name; });
  const form = h("form", { id: "delete-form", class: "card" }, h("h3", {}, "Delete"), typed, " ", button, out);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (typed.value !== name) return;
    try {
      await api(`/tasks/${enc(name)}`, { method: "DELETE" });
      location.hash = "#/tasks";
    } catch (err) {
      showError(out, err);
    }
  });
  return form;
}
