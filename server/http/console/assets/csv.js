// The first rows of a CSV or JSON-lines file, parsed in the browser for the Jobs page's
// preview and column pickers. Only the file's first 256 KiB are read; the server checks the
// whole file again when the job is submitted (a bad row is a 422 naming it).

const HEAD_BYTES = 256 * 1024;

export async function preview(file, maxRows = 10) {
  const whole = file.size <= HEAD_BYTES;
  const text = await file.slice(0, HEAD_BYTES).text();
  if (/\.jsonl?$/i.test(file.name)) return jsonLines(text, whole, maxRows);
  const rows = parseCsv(text, whole);
  if (!rows.length) return { columns: [], rows: [] };
  const [columns, ...body] = rows;
  const data = body.filter((r) => r.length > 1 || r[0] !== "").slice(0, maxRows);
  return { columns, rows: data.map((r) => Object.fromEntries(columns.map((c, i) => [c, r[i] ?? ""]))) };
}

function jsonLines(text, whole, maxRows) {
  const lines = text.split(/\r?\n/);
  if (!whole) lines.pop();
  const rows = [];
  for (const line of lines) {
    if (!line.trim()) continue;
    const value = JSON.parse(line);
    if (value && typeof value === "object" && !Array.isArray(value)) rows.push(value);
    if (rows.length >= maxRows) break;
  }
  const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  return { columns, rows: rows.map((r) => Object.fromEntries(columns.map((c) => [c, r[c] == null ? "" : String(r[c])]))) };
}

// RFC 4180: quoted fields may hold commas, doubled quotes and line breaks.
export function parseCsv(text, whole = true) {
  const rows = [];
  let row = [], field = "", quoted = false, i = 0;
  if (text.charCodeAt(0) === 0xfeff) i = 1; // a byte-order mark
  for (; i < text.length; i += 1) {
    const c = text[i];
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') { field += '"'; i += 1; } else quoted = false;
      } else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") { row.push(field); field = ""; }
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i += 1;
      row.push(field); rows.push(row); row = []; field = "";
    } else field += c;
  }
  // A cut file's last, partial row is dropped.
  if (whole && (field !== "" || row.length)) { row.push(field); rows.push(row); }
  return rows;
}
