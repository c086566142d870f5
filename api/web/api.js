// The page's HTTP client: the public API with the pasted bearer key, its errors as the API words them, and
// the job event stream. EventSource cannot send an Authorization header, so events are read with fetch().

const KEY_STORAGE = "animegan.apiKey";
// The API's terminal statuses (JobStatus in the OpenAPI schema; tests/api/test_web_assets.py compares them).
const TERMINAL = new Set(["succeeded", "partial", "failed", "canceled", "expired"]);

export function savedKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

export function saveKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

export function isTerminal(status) {
  return TERMINAL.has(status);
}

// An error answer of the API: {"error": {"code", "message"}}; `message` is what the user sees.
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function errorOf(response) {
  let code = `http_${response.status}`;
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    // Not JSON (a proxy's error page, say): the status line is all there is to show.
  }
  return new ApiError(response.status, code, message);
}

export async function apiFetch(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const key = savedKey();
  if (key) headers.set("Authorization", `Bearer ${key}`);
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (exc) {
    throw new ApiError(0, "unreachable", `the API did not answer (${exc.message}); is it running?`);
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

export async function apiJson(path, options = {}) {
  return (await apiFetch(path, options)).json();
}

// A protected file (result, sample) as a blob: URL an <img> or a download link can use.
export async function blobUrl(path) {
  const blob = await (await apiFetch(path)).blob();
  return URL.createObjectURL(blob);
}

// Yields {name, data} for each server-sent event of the job until the server ends the stream.
async function* jobEvents(jobId, signal) {
  const response = await apiFetch(`/v1/jobs/${jobId}/events`, {
    signal,
    headers: { Accept: "text/event-stream" },
  });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of frame.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trim());
      }
      if (data.length) yield { name, data: JSON.parse(data.join("\n")) };
    }
  }
}

// Calls onJob(record) with the job's record at start and after every event, until the job ends; returns the
// final record. A progress event carries only the changed fields, so the record is re-read after each one.
// A stream cut short (proxy, network) is reopened: it always starts with the current state.
export async function watchJob(jobId, onJob) {
  for (;;) {
    try {
      for await (const event of jobEvents(jobId)) {
        const record = event.name === "state" ? event.data : await apiJson(`/v1/jobs/${jobId}`);
        onJob(record);
        if (isTerminal(record.status)) return record;
      }
    } catch (exc) {
      if (exc instanceof ApiError && exc.status >= 400 && exc.status < 500) throw exc;
    }
    const record = await apiJson(`/v1/jobs/${jobId}`);
    onJob(record);
    if (isTerminal(record.status)) return record;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}
