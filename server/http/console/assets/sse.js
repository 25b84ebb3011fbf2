// Server-Sent Events over fetch(): EventSource cannot send an Authorization header, and the
// key must never go into the URL, so the stream is read from fetch()'s body and parsed here
// (the WHATWG event-stream format: "event:", "data:", "id:" lines, a blank line ends one).

import { api } from "./api.js";

export async function* eventStream(path, { lastEventId, signal } = {}) {
  const extraHeaders = { Accept: "text/event-stream" };
  if (lastEventId != null) extraHeaders["Last-Event-ID"] = String(lastEventId);
  const response = await api(path, { raw: true, extraHeaders, signal });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = fresh();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      const lines = buffer.split(/\r\n|\n|\r/);
      buffer = lines.pop(); // a partial line waits for the next chunk
      for (const line of lines) {
        if (line === "") {
          if (event.data.length) yield { type: event.type, id: event.id, data: event.data.join("\n") };
          event = fresh();
        } else if (!line.startsWith(":")) {
          const at = line.indexOf(":");
          const field = at < 0 ? line : line.slice(0, at);
          let v = at < 0 ? "" : line.slice(at + 1);
          if (v.startsWith(" ")) v = v.slice(1);
          if (field === "data") event.data.push(v);
          else if (field === "event") event.type = v;
          else if (field === "id") event.id = v;
        }
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

function fresh() {
  return { type: "message", id: null, data: [] };
}
