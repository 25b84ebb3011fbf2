// Jobs: the list (GET /jobs, newest first, a cursor per page) and the submit form (POST /jobs:
// the CSV or JSON-lines file and a config picked from its columns, previewed in the browser).

import { api, missingRoute, q } from "../api.js";
import { badge, poller, showError } from "../common.js";
import { preview } from "../csv.js";
import { clear, fmtTime, h, replace } from "../dom.js";

const PAGE = 20;
export const STATUS_CLASS = { succeeded: "good", failed: "bad", cancelled: "idle", running: "warn", queued: "idle", validating_files: "idle" };

export function render(main) {
  const list = h("div", { id: "jobs-list" });
  const filter = h("select", { id: "jobs-status" }, h("option", { value: "" }, "any status"),
    Object.keys(STATUS_CLASS).map((s) => h("option", { value: s }, s)));
  const state = { after: [null], index: 0, missing: false };
  main.append(h("h1", {}, "Jobs"), submitForm(), h("h2", {}, "Recent jobs"), h("label", {}, "Status ", filter), list);
  filter.addEventListener("change", () => { state.after = [null]; state.index = 0; load(); });

  async function load() {
    try {
      const page = await api(`/jobs${q({ limit: PAGE, after: state.after[state.index], status: filter.value })}`);
      if (page.next_cursor) state.after[state.index + 1] = page.next_cursor;
      const prev = h("button", { type: "button", disabled: state.index === 0, onclick: () => { state.index -= 1; load(); } }, "\u2190 Newer");
      const next = h("button", { type: "button", disabled: !page.has_more, onclick: () => { state.index += 1; load(); } }, "Older \u2192");
      replace(list, table(page.data || []), h("div", { class: "pager" }, prev, next));
    } catch (err) {
      if (missingRoute(err)) {
        state.missing = true; // no jobs API: nothing to poll for
        replace(list, h("p", { class: "notice", id: "no-jobs-api" }, "This server has no jobs API (POST /jobs): train with `bitfit train` and upload the bias set."));
      } else showError(list, err);
    }
  }
  return poller(async () => { if (!state.missing) await load(); }, 3000);
}

function table(jobs) {
  if (!jobs.length) return h("p", { class: "muted" }, "No job yet.");
  return h("table", { class: "grid", id: "jobs-table" },
    h("thead", {}, h("tr", {}, ["Job", "Task", "Status", "Progress", "Created", "Published"].map((c) => h("th", {}, c)))),
    h("tbody", {}, jobs.map((j) => {
      const p = j.progress || {};
      const r = j.result || {};
      return h("tr", { dataset: { job: j.id } },
        h("td", {}, h("a", { href: `#/job/${encodeURIComponent(j.id)}` }, j.id)), h("td", {}, j.task),
        h("td", {}, badge(j.status, STATUS_CLASS[j.status] || "idle")),
        h("td", {}, p.epochs ? `epoch ${p.epoch ?? 0}/${p.epochs}` : ""), h("td", {}, fmtTime(j.created_at)),
        h("td", {}, r.published ? `v${r.version}` : (j.status === "succeeded" ? "not published" : "")));
    })));
}

function submitForm() {
  const file = h("input", { id: "job-file", type: "file", accept: ".csv,.jsonl,.json", required: true });
  const validation = h("input", { id: "job-validation", type: "file", accept: ".csv,.jsonl,.json" });
  const task = h("input", { id: "job-task", type: "text", required: true, placeholder: "task name, e.g. acme.sentiment", spellcheck: false });
  const text = h("select", { id: "job-text-column" });
  const pair = h("select", { id: "job-pair-column" });
  const label = h("select", { id: "job-label-column" });
  const publish = h("select", { id: "job-publish" }, ["if_better", "always", "never"].map((p) => h("option", { value: p }, p)));
  const epochs = h("input", { id: "job-epochs", type: "text", value: "auto", size: 5 });
  const lr = h("input", { id: "job-lr", type: "text", value: "auto", size: 8 });
  const batch = h("input", { id: "job-batch", type: "text", value: "auto", size: 5 });
  const maxLength = h("input", { id: "job-max-length", type: "text", value: "auto", size: 5 });
  const shown = h("div", { id: "job-preview" });
  const out = h("div", { id: "job-submit-result", class: "result" });
  file.addEventListener("change", async () => {
    clear(shown);
    if (!file.files.length) return;
    try {
      const { columns, rows } = await preview(file.files[0]);
      fill(text, columns, ["text", "sentence", "review"], false);
      fill(pair, columns, ["text_pair", "sentence2", "hypothesis"], true);
      fill(label, columns, ["label", "labels", "target"], false);
      replace(shown, h("p", { class: "muted" }, `First ${rows.length} rows of ${file.files[0].name} (parsed here; the server checks every row):`),
        h("table", { class: "grid preview", id: "job-preview-table" }, h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c)))),
          h("tbody", {}, rows.map((r) => h("tr", {}, columns.map((c) => h("td", {}, clip(r[c]))))))));
    } catch (err) {
      replace(shown, h("p", { class: "error" }, `cannot read this file here: ${err.message || err}`));
    }
  });
  const form = h("form", { id: "job-form", class: "card" }, h("h3", {}, "Train a task"),
    h("div", { class: "row" }, h("label", {}, "Training file ", file), h("label", {}, "Validation file (optional) ", validation)), shown,
    h("div", { class: "row" }, h("label", {}, "Task ", task), h("label", {}, "Text column ", text), h("label", {}, "Pair column ", pair),
      h("label", {}, "Label column ", label)),
    h("div", { class: "row" }, h("label", {}, "Publish ", publish), h("label", {}, "Epochs ", epochs), h("label", {}, "Learning rate ", lr),
      h("label", {}, "Batch size ", batch), h("label", {}, "Max length ", maxLength)),
    h("button", { type: "submit", id: "job-submit" }, "Submit job"), out);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!file.files.length) return;
    const hyper = { epochs: auto(epochs.value, parseInt), learning_rate: auto(lr.value, parseFloat),
      batch_size: auto(batch.value, parseInt), max_length: auto(maxLength.value, parseInt) };
    const config = { task: task.value.trim(), text_column: text.value, label_column: label.value, publish: publish.value, hyperparameters: hyper };
    if (pair.value) config.text_pair_column = pair.value;
    const body = new FormData();
    body.append("config", JSON.stringify(config));
    body.append("train", file.files[0]);
    if (validation.files.length) body.append("validation", validation.files[0]);
    replace(out, "Uploading and checking the data\u2026");
    try {
      const job = await api("/jobs", { method: "POST", form: body, extraHeaders: { "Idempotency-Key": crypto.randomUUID() } });
      location.hash = `#/job/${encodeURIComponent(job.id)}`;
    } catch (err) {
      showError(out, err);
    }
  });
  return form;
}

function fill(select, columns, likely, optional) {
  replace(select, optional ? h("option", { value: "" }, "none") : null, columns.map((c) => h("option", { value: c }, c)));
  const pick = columns.find((c) => likely.includes(c.toLowerCase()));
  select.value = pick ?? (optional ? "" : columns[0] ?? "");
}

function auto(text, parse) {
  const t = String(text).trim();
  if (!t || t === "auto") return "auto";
  const n = parse(t);
  return Number.isFinite(n) ? n : t; // the server names a bad value (422)
}

function clip(value) {
  const t = String(value ?? "");
  return t.length > 120 ? `${t.slice(0, 119)}\u2026` : t;
}
