// The one way the console puts anything on the page: elements built with createElement and
// every string as a Text node (textContent). No module uses innerHTML, so a task label such
// as `<img src=x onerror=alert(1)>` is shown as those characters and never parsed as HTML.

// C0/C1 controls, zero-width and bidirectional overrides: drawn as visible symbols, so a
// label cannot hide characters or reorder what is shown after it.
const HIDDEN = /[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]/g;

export function shown(value) {
  const text = value == null ? "" : String(value);
  return text.replace(HIDDEN, (c) => {
    const n = c.codePointAt(0);
    if (n < 0x20) return String.fromCodePoint(0x2400 + n); // U+2400.. Control Pictures
    if (n === 0x7f) return "\u2421";
    return `\\u{${n.toString(16)}}`;
  });
}

const PROPS = new Set(["value", "checked", "disabled", "selected", "type", "id", "name", "placeholder", "title", "htmlFor",
  "multiple", "accept", "required", "rows", "cols", "min", "max", "step", "open", "hidden", "readOnly", "spellcheck"]);

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  return append(el, children);
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "class") el.className = Array.isArray(v) ? v.filter(Boolean).join(" ") : v;
    else if (k === "dataset") for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = String(dv);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "href") el.setAttribute("href", link(v));
    else if (PROPS.has(k)) el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

// Links stay inside the console (hash routes) or this server: never a javascript: URL.
function link(href) {
  const s = String(href);
  if (s.startsWith("#") || s.startsWith("/")) return s.startsWith("//") ? "#" : s;
  if (s.startsWith("blob:")) return s;
  return "#";
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(shown(child)));
  }
  return el;
}

// Long free text the user typed (try-it inputs): shown as is, line breaks kept by CSS.
export function plain(value) {
  return document.createTextNode(value == null ? "" : String(value));
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function replace(el, ...children) {
  return append(clear(el), children);
}

const SVG = "http://www.w3.org/2000/svg";

export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "class") el.setAttribute("class", v);
    else if (k === "dataset") for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = String(dv);
    else el.setAttribute(k, String(v));
  }
  return append(el, children);
}

export function fmtBytes(n) {
  if (n == null) return "";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

export function fmtTime(value) {
  if (value == null || value === "") return "";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

export function fmtNum(x, digits = 4) {
  if (x == null || Number.isNaN(x)) return "";
  if (typeof x !== "number") return String(x);
  return Number.isInteger(x) ? String(x) : x.toFixed(digits);
}

export function errorBox(err) {
  return h("p", { class: "error", role: "alert" }, describe(err));
}

export function describe(err) {
  if (err && err.status != null) {
    const body = err.body && err.body.error;
    const message = body ? `${body.code || ""}: ${body.message || ""}` : String(err.body || "");
    return `${err.status}: ${message}`;
  }
  return String(err && err.message ? err.message : err);
}
