// Tasks: the catalog a page at a time (GET /tasks?limit=&cursor=&prefix=: a page costs the
// same at any cursor, whatever the catalog holds), each row's details (GET /tasks/{name}, a
// store read each: only for the rows scrolled into view, and once per version, remembered
// by name and sha256 while the tab lives), request figures (GET /stats/tasks for the names
// shown, every 5 s), and an upload form (POST /tasks).

import { api, enc, q } from "../api.js";
import { badge, poller, scores, showError, stateOf } from "../common.js";
import { clear, fmtBytes, fmtTime, h, replace } from "../dom.js";

const PAGE = 50;
const DETAIL_FETCHES = 2; // at once
const known = new Map(); // "name@sha256" -> GET /tasks/{name}: a version's details never change

export function render(main) {
  const state = { prefix: "", cursors: [null], index: 0, gen: 0, rows: new Map(), last: null, observer: null };
  const summary = h("p", { id: "tasks-summary", class: "muted" });
  const status = h("div", { id: "tasks-status" });
  const body = h("tbody");
  const table = h("table", { id: "tasks-table", class: "grid" },
    h("thead", {}, h("tr", {}, ["Task", "Version", "State", "Labels", "Size", "Created", "Training", "Req/s", "p50 ms", "Requests"].map((c) => h("th", {}, c)))),
    body);
  const prev = h("button", { id: "prev-page", type: "button", disabled: true }, "\u2190 Previous");
  const next = h("button", { id: "next-page", type: "button", disabled: true }, "Next \u2192");
  const pageNo = h("span", { id: "page-number", class: "muted" });
  const search = h("input", { id: "prefix-input", type: "search", placeholder: "name prefix, e.g. acme.", spellcheck: false });

  async function load() {
    const gen = ++state.gen;
    prev.disabled = next.disabled = true;
    try {
      const page = await api(`/tasks${q({ limit: PAGE, cursor: state.cursors[state.index], prefix: state.prefix })}`);
      if (gen !== state.gen) return;
      clear(status);
      state.last = page;
      showSummary(page);
      state.rows = new Map();
      replace(body, page.tasks.map((t) => row(t)));
      if (!page.tasks.length) body.append(h("tr", {}, h("td", { colspan: 10, class: "muted" }, "No task here.")));
      if (page.next_cursor) state.cursors[state.index + 1] = page.next_cursor;
      next.disabled = !page.next_cursor;
      prev.disabled = state.index === 0;
      pageNo.textContent = `page ${state.index + 1}`;
      watch(gen, page.tasks);
      figures().catch(() => {}); // no figures is not an error of the page
    } catch (err) {
      if (gen === state.gen) { showError(status, err); clear(body); }
    }
  }

  function showSummary(page) {
    const parts = [];
    if (page.catalog_tasks != null) parts.push(`${page.catalog_tasks.toLocaleString()} tasks in the catalog`);
    if (page.unhealthy && page.unhealthy.length) parts.push(`${page.unhealthy.length} unhealthy`);
    replace(summary, parts.join(" \u00b7 "));
  }

  function row(t) {
    const st = stateOf(t);
    const cells = {
      labels: h("td", { class: "labels" }), size: h("td", { class: "num" }), created: h("td", {}), training: h("td", {}),
      rate: h("td", { class: "num rate" }), p50: h("td", { class: "num p50" }), requests: h("td", { class: "num requests" }),
    };
    const tr = h("tr", { dataset: { task: t.name } },
      h("td", {}, h("a", { href: `#/task/${enc(t.name)}`, class: "task-link" }, t.name)),
      h("td", { class: "num" }, `v${t.version}`),
      h("td", {}, badge(st.word, st.cls), st.reason ? h("div", { class: "reason" }, st.reason) : null),
      cells.labels, cells.size, cells.created, cells.training, cells.rate, cells.p50, cells.requests);
    state.rows.set(t.name, { cells, seen: null });
    return tr;
  }

  // Rows ask for their details when they scroll into view (a page of 50 shows ~18 at first).
  function watch(gen, tasks) {
    const queue = [];
    let running = 0;
    const pump = () => {
      while (running < DETAIL_FETCHES && queue.length && gen === state.gen) {
        running += 1;
        detail(gen, queue.shift()).finally(() => { running -= 1; pump(); });
      }
    };
    const bySha = new Map(tasks.map((t) => [t.name, t.sha256]));
    state.observer && state.observer.disconnect();
    state.observer = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        if (!entry.isIntersecting) continue;
        state.observer.unobserve(entry.target);
        const name = entry.target.dataset.task;
        const cached = known.get(`${name}@${bySha.get(name)}`);
        if (cached) show(name, cached);
        else queue.push(name);
      }
      pump();
    });
    for (const tr of body.querySelectorAll("tr[data-task]")) state.observer.observe(tr);
  }

  async function detail(gen, name) {
    const entry = state.rows.get(name);
    try {
      const info = await api(`/tasks/${enc(name)}`);
      known.set(`${name}@${info.sha256}`, info);
      if (known.size > 5000) known.delete(known.keys().next().value); // bounded, oldest out
      if (gen === state.gen) show(name, info);
    } catch (err) {
      if (entry && gen === state.gen) replace(entry.cells.labels, h("span", { class: "error" }, String(err.status || err)));
    }
  }

  function show(name, info) {
    const entry = state.rows.get(name);
    if (!entry) return;
    replace(entry.cells.labels, info.labels.map((l) => h("span", { class: "label" }, l)));
    replace(entry.cells.size, fmtBytes(info.size_bytes));
    replace(entry.cells.created, fmtTime(info.created_at));
    const tr = info.training || {};
    replace(entry.cells.training, [tr.method, scores(tr.test || tr.validation)].filter(Boolean).join(": "));
  }

  async function figures() {
    const names = [...state.rows.keys()];
    if (!names.length) return;
    const gen = state.gen;
    const answer = await api(`/stats/tasks${q({ names: names.join(",") })}`);
    if (gen !== state.gen) return;
    for (const f of answer.tasks) {
      const entry = state.rows.get(f.name);
      if (!entry) continue;
      if (!f.tracked) {
        for (const c of ["rate", "p50", "requests"]) replace(entry.cells[c], "\u2014");
        entry.cells.requests.title = `no figures: unused so far, or past the ${answer.max_tracked} tasks the metrics track`;
        continue;
      }
      const before = entry.seen;
      entry.seen = { requests: f.requests, clock: answer.clock_s };
      const rate = before && answer.clock_s > before.clock ? (f.requests - before.requests) / (answer.clock_s - before.clock) : null;
      replace(entry.cells.rate, rate == null ? "\u2026" : rate.toFixed(2));
      replace(entry.cells.p50, f.p50_ms == null ? "\u2014" : f.p50_ms.toFixed(1));
      replace(entry.cells.requests, String(f.requests));
    }
  }

  prev.addEventListener("click", () => { if (state.index > 0) { state.index -= 1; load(); } });
  next.addEventListener("click", () => { if (state.cursors[state.index + 1]) { state.index += 1; load(); } });
  const form = h("form", { id: "search-form", class: "inline", onsubmit: (e) => {
    e.preventDefault();
    state.prefix = search.value.trim();
    state.cursors = [null];
    state.index = 0;
    load();
  } }, h("label", { htmlFor: "prefix-input" }, "Search"), search, h("button", { type: "submit" }, "Search"));

  main.append(h("h1", {}, "Tasks"), summary, form, status, table, h("div", { class: "pager" }, prev, pageNo, next), uploadForm(load));
  load();
  const stop = poller(async () => { if (state.rows.size) await figures(); }, 5000);
  return () => { state.gen += 1; stop(); state.observer && state.observer.disconnect(); };
}

// POST /tasks: a bias-set file (a new task, or a new version of the task its metadata names).
export function uploadForm(done, task = null) {
  const file = h("input", { id: task ? "replace-file" : "upload-file", type: "file", accept: ".safetensors", required: true });
  const name = task ? null : h("input", { id: "upload-name", type: "text", placeholder: "optional: overrides the file's task name", spellcheck: false });
  const allow = h("input", { id: task ? "replace-allow" : "upload-allow", type: "checkbox" });
  const out = h("div", { class: "result", id: task ? "replace-result" : "upload-result" });
  const form = h("form", { id: task ? "replace-form" : "upload-form", class: "card" },
    h("h3", {}, task ? "Replace with a new version" : "Upload a bias set"),
    h("label", {}, "File ", file), name ? h("label", {}, "Name ", name) : null,
    h("label", { class: "check" }, allow, " allow a change of labels"),
    h("button", { type: "submit" }, task ? "Replace" : "Upload"), out);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!file.files.length) return;
    const body = new FormData();
    body.append("file", file.files[0]);
    if (name && name.value.trim()) body.append("name", name.value.trim());
    const query = allow.checked ? "?allow_label_change=true" : "";
    replace(out, "Uploading\u2026");
    try {
      const info = await api(task ? `/tasks/${enc(task)}${query}` : `/tasks${query}`, { method: task ? "PUT" : "POST", form: body });
      replace(out, h("span", { class: "ok" }, "Stored and servable: "), h("a", { href: `#/task/${enc(info.name)}` }, `${info.name} v${info.version}`));
      form.reset();
      done && done(info);
    } catch (err) {
      showError(out, err);
    }
  });
  return form;
}
