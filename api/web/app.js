// The page's wiring: the key, the model picker, the error banner, and the stylize jobs (one photo or a
// batch): dropped files are sent, each job is followed live, and its before/after images are shown.

import { apiJson, blobUrl, isTerminal, saveKey, savedKey, watchJob } from "./api.js";
import { initTraining } from "./training.js";
import { $, clearError, element, loadModels, showError } from "./ui.js";

function progressText(job) {
  const p = job.progress || {};
  const counts = p.total ? `${p.done || 0}${p.failed ? ` (+${p.failed} failed)` : ""} of ${p.total}` : "";
  return [job.status, counts].filter(Boolean).join(" · ");
}

// A card for a job sent now (at the top of #jobs), or, with `past`, one restored from the key's history.
function jobCard(title, past = false) {
  const status = element("span", { class: "status", text: "sending" });
  const bar = element("progress", { max: "1", value: "0" });
  const body = element("div", { class: "pairs" });
  const links = element("div", { class: "links" });
  const cancel = element("button", { type: "button", class: "cancel", text: "Cancel", hidden: "" });
  const card = element("article", { class: past ? "past-job" : "job-card", "data-status": "sending" },
    element("h3", { text: title }), status, bar, body, links, cancel);
  if (past) $("#history").append(card);
  else $("#jobs").prepend(card);
  return { card, status, bar, body, links, cancel };
}

// A job that has not ended can be canceled from its card (a single image stops before its result is stored).
function offerCancel(ui, jobId) {
  ui.cancel.hidden = false;
  ui.cancel.addEventListener("click", () => {
    ui.cancel.disabled = true;
    apiJson(`/v1/jobs/${jobId}/cancel`, { method: "POST" }).catch(showError);
  });
}

function showProgress(ui, record) {
  ui.card.dataset.status = record.status;
  ui.status.textContent = progressText(record);
  const p = record.progress || {};
  ui.bar.max = p.total || 1;
  ui.bar.value = (p.done || 0) + (p.failed || 0);
}

function pair(beforeUrl, name) {
  const after = element("img", { class: "after", alt: `${name}, stylized` });
  const row = element("div", { class: "pair" },
    element("figure", {}, element("img", { class: "before", src: beforeUrl, alt: name }),
      element("figcaption", { text: "before" })),
    element("figure", {}, after, element("figcaption", { text: "after" })));
  return { row, after };
}

function downloadLink(url, filename, text) {
  return element("a", { href: url, download: filename, class: "download", text });
}

async function stylize(files) {
  clearError();
  const form = new FormData();
  form.append("model", $("#model").value);
  form.append("format", $("#format").value);
  const single = files.length === 1;
  for (const file of files) form.append(single ? "file" : "files", file, file.name);
  const ui = jobCard(single ? files[0].name : `${files.length} photos`);
  const pairs = files.map((file) => pair(URL.createObjectURL(file), file.name));
  ui.body.append(...pairs.map((p) => p.row));
  let job;
  try {
    // One image usually takes well under a minute: the answer is the finished job (Prefer: wait), no stream.
    const headers = single ? { Prefer: "wait=60" } : {};
    job = await apiJson(single ? "/v1/stylize" : "/v1/batches", { method: "POST", body: form, headers });
  } catch (exc) {
    ui.card.dataset.status = "refused";
    ui.status.textContent = `refused: ${exc.message}`;
    throw exc;
  }
  ui.card.dataset.jobId = job.id;
  await followJob(ui, job, single, pairs, files[0].name);
}

// Shows the job's progress until it ends, then its result (or why there is none).
async function followJob(ui, job, single, pairs, name) {
  showProgress(ui, job);
  if (!isTerminal(job.status)) offerCancel(ui, job.id);
  const final = isTerminal(job.status) ? job : await watchJob(job.id, (record) => showProgress(ui, record));
  ui.cancel.remove();
  if (final.status !== "succeeded" && final.status !== "partial") {
    ui.status.textContent = `${final.status}: ${final.error ? final.error.message : ""}`;
    if (!single && final.status === "failed") showBatchItems(job.id, pairs);
    return;
  }
  // partial: some images of the batch failed; the others are in the zip, the error sums up the failures.
  if (final.status === "partial") ui.status.textContent = `partial: ${final.error.message}`;
  // The stored result's own extension (the service's media table chose it), e.g. "jpg" for format jpeg.
  const ext = single ? final.result.output_key.split(".").pop() : "zip";
  const resultUrl = await blobUrl(`/v1/jobs/${job.id}/result`);
  if (single) {
    pairs[0].after.src = resultUrl;
    ui.links.append(downloadLink(resultUrl, `${name.replace(/\.[^.]*$/, "")}.anime.${ext}`, "Download result"));
  } else {
    showBatchItems(job.id, pairs);
    ui.links.append(downloadLink(resultUrl, `${job.id}.zip`, "Download all (zip)"));
  }
}

// A batch's images, once it has ended: each from GET /v1/jobs/{id}/results/{i}, or the reason it failed.
function showBatchItems(jobId, pairs) {
  pairs.forEach((p, index) => {
    blobUrl(`/v1/jobs/${jobId}/results/${index}`).then(
      (url) => { p.after.src = url; },
      (exc) => { p.after.replaceWith(element("p", { class: "item-error", text: exc.message })); },
    );
  });
}

function initKey(onSaved) {
  // The demo prints a link with the key in the fragment (#key=...): it never reaches a server log.
  const fromLink = new URLSearchParams(location.hash.slice(1)).get("key");
  if (fromLink) {
    saveKey(fromLink);
    history.replaceState(null, "", location.pathname);
  }
  $("#api-key").value = savedKey();
  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    saveKey($("#api-key").value.trim());
    clearError();
    onSaved();
  });
}

function initDropZone() {
  const zone = $("#drop-zone");
  const send = (list) => {
    const files = [...list];
    if (files.length) stylize(files).catch(showError);
  };
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    send(event.dataTransfer.files);
  });
  $("#file-input").addEventListener("change", (event) => {
    send(event.target.files);
    event.target.value = "";
  });
}

// The key's earlier photo jobs (GET /v1/jobs lists this key's only): a reload keeps them, and follows the
// ones still going.
async function restoreHistory() {
  const shown = new Set([...document.querySelectorAll(".job-card, .past-job")].map((c) => c.dataset.jobId));
  const { items } = await apiJson("/v1/jobs?limit=20");
  for (const job of items.filter((j) => (j.kind === "stylize" || j.kind === "batch") && !shown.has(j.id))) {
    const single = job.kind === "stylize";
    const total = (job.progress || {}).total || 0;
    const title = single ? job.params.filename || "photo" : `${total} photos`;
    const ui = jobCard(title, true);
    ui.card.dataset.jobId = job.id;
    const pairs = Array.from({ length: single ? 1 : total }, () => {
      const after = element("img", { class: "after", alt: "stylized" });
      ui.body.append(element("div", { class: "pair" }, element("figure", {}, after)));
      return { after };
    });
    followJob(ui, job, single, pairs, title).catch(showError);
  }
}

// Everything that needs a key; without one the page asks for it instead of showing the API's 401.
function start() {
  if (!savedKey()) {
    $("#key-status").textContent = "paste your API key to start (the demo prints one; or `animegan keys create`)";
    return;
  }
  loadModels().then(restoreHistory).catch(showError);
}

initKey(start);
initDropZone();
$("#refresh-models").addEventListener("click", () => loadModels().catch(showError));
initTraining();
start();
