// Try it: texts (or pairs) -> POST /predict/{task}?version=N with every label's score, drawn
// as bars; a second kept version side by side with the first.

import { api, enc, q } from "../api.js";
import { showError } from "../common.js";
import { h, plain, replace } from "../dom.js";
import { bars } from "../plots.js";

export function tryIt(info) {
  const pair = info.inputs === "text_pair"; // bias_store/kinds.py InputKind
  const texts = h("textarea", { id: "try-texts", rows: 4, placeholder: pair ? "first texts, one per line" : "one text per line", spellcheck: false });
  const pairs = pair ? h("textarea", { id: "try-pairs", rows: 4, placeholder: "second texts (the pairs), one per line, same order", spellcheck: false }) : null;
  const options = (id, blank) => h("select", { id }, blank ? h("option", { value: "" }, blank) : null,
    [...info.versions].reverse().map((v) => h("option", { value: String(v), selected: !blank && v === info.version }, v === info.version ? `v${v} (live)` : `v${v}`)));
  const versionA = options("try-version");
  const versionB = options("try-compare", "none");
  const out = h("div", { id: "try-result" });
  const form = h("form", { id: "try-form", class: "card" },
    h("div", { class: "row" }, texts, pairs),
    h("label", {}, "Version ", versionA), h("label", {}, " compare with ", versionB), " ", h("button", { type: "submit", id: "try-run" }, "Score"), out);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const first = texts.value.split("\n").filter((t) => t.trim());
    const second = pairs ? pairs.value.split("\n").filter((t) => t.trim()) : null;
    if (!first.length) return;
    if (second && second.length !== first.length) {
      replace(out, h("p", { class: "error" }, `${first.length} first texts but ${second.length} pairs: give one pair per line`));
      return;
    }
    const inputs = second ? first.map((t, i) => ({ text: t, text_pair: second[i] })) : first;
    const wanted = [versionA.value, versionB.value].filter((v, i) => v && (i === 0 || v !== versionA.value));
    replace(out, "Scoring\u2026");
    try {
      const results = await Promise.all(wanted.map((v) =>
        api(`/predict/${enc(info.name)}${q({ version: v })}`, { method: "POST", json: { inputs, return_all_scores: true } })));
      replace(out, table(inputs, results, info.problem_type === "regression" ? null : 1));
    } catch (err) {
      showError(out, err);
    }
  });
  return form;
}

function table(inputs, results, scale) {
  const head = h("tr", {}, h("th", {}, "Input"), results.map((r) => h("th", {}, `v${r.version}`)));
  const rows = inputs.map((input, i) => h("tr", { class: "try-row", dataset: { index: i } },
    h("td", { class: "try-input" }, typeof input === "string" ? plain(input) : [plain(input.text), h("br"), h("span", { class: "muted" }, plain(input.text_pair))]),
    results.map((r) => {
      const p = r.predictions[i];
      const items = Object.entries(p.scores || { [p.label]: p.score }).map(([label, value]) => ({ label, value, best: label === p.label }));
      return h("td", { class: "try-cell", dataset: { version: r.version, label: p.label } }, bars(items, { scale }));
    })));
  return h("table", { class: "grid try" }, h("thead", {}, head), h("tbody", {}, rows));
}
