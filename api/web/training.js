// The training form and its runs: POST /v1/trainings (unpaired, paired or teacher mode), then phase, step,
// a chart of the named losses (plain canvas) and the latest sample grid, until the new model is registered.

import { apiFetch, apiJson, blobUrl, watchJob } from "./api.js";
import { $, clearError, element, loadModels, showError } from "./ui.js";

const HYPER_NUMBERS = ["epochs", "init_epochs", "batch_size", "image_size", "max_total_steps", "base_channels"];
const COLORS = ["#d1495b", "#00798c", "#edae49", "#30638e", "#66a182", "#8d6a9f", "#2e4057", "#b5651d"];
// The file list is re-read at most this often while a run is going (samples come every few hundred steps).
const SAMPLE_POLL_MS = 5000;

function selectedMode(form) {
  return form.querySelector("input[name=mode]:checked").value;
}

// Only the dataset fields of the chosen mode are shown (and sent).
function showModeFields(form) {
  const mode = selectedMode(form);
  for (const label of form.querySelectorAll("[data-mode]")) label.hidden = label.dataset.mode !== mode;
}

function trainingForm(form) {
  const data = new FormData();
  const mode = selectedMode(form);
  data.append("name", form.elements.name.value.trim());
  // unpaired is the API's default mode: sent only when another one is chosen.
  if (mode !== "unpaired") data.append("mode", mode);
  data.append("photos", form.elements.photos.files[0]);
  if (mode === "unpaired" && form.elements.styles.files[0]) data.append("styles", form.elements.styles.files[0]);
  if (mode === "paired" && form.elements.targets.files[0]) data.append("targets", form.elements.targets.files[0]);
  if (mode === "distill") data.append("teacher", form.elements.teacher.value);
  // No preset chosen: the API starts from the mode's own (paired: "paired", distill: "distill").
  const hyper = form.elements.preset.value ? { preset: form.elements.preset.value } : {};
  for (const name of HYPER_NUMBERS) {
    const value = form.elements[name].value;
    if (value !== "") hyper[name] = Number(value);
  }
  data.append("hyperparameters", JSON.stringify(hyper));
  return data;
}

// Loss curves on a log scale (terms differ by orders of magnitude), one colour per named term.
function drawLosses(canvas, series) {
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  const points = [...series.values()].flat();
  if (!points.length) return;
  const log = (v) => Math.log10(Math.max(v, 1e-6));
  const steps = points.map((p) => p[0]);
  const logs = points.map((p) => log(p[1]));
  const [x0, x1] = [Math.min(...steps), Math.max(...steps)];
  const [y0, y1] = [Math.min(...logs), Math.max(...logs)];
  const pad = 28;
  const x = (step) => pad + ((step - x0) / Math.max(x1 - x0, 1)) * (width - 2 * pad);
  const y = (value) => height - pad - ((log(value) - y0) / Math.max(y1 - y0, 1e-9)) * (height - 2 * pad);
  ctx.strokeStyle = "#999";
  ctx.strokeRect(pad, pad, width - 2 * pad, height - 2 * pad);
  ctx.fillStyle = "#555";
  ctx.font = "11px sans-serif";
  ctx.fillText(`step ${x0}`, pad, height - 8);
  ctx.fillText(`${x1}`, width - pad - 30, height - 8);
  ctx.fillText(`${(10 ** y1).toPrecision(3)}`, 2, pad - 6);
  ctx.fillText(`${(10 ** y0).toPrecision(3)} (log scale)`, pad + 4, height - pad - 4);
  [...series.values()].forEach((data, i) => {
    ctx.strokeStyle = ctx.fillStyle = termColor(i);
    ctx.beginPath();
    data.forEach(([step, value], j) => (j ? ctx.lineTo(x(step), y(value)) : ctx.moveTo(x(step), y(value))));
    ctx.stroke();
    // A dot per logged step: the first log of a run is a single point, which a line alone would not show.
    for (const [step, value] of data) ctx.fillRect(x(step) - 2, y(value) - 2, 4, 4);
  });
  canvas.dataset.points = points.length;
}

function termColor(index) {
  return COLORS[index % COLORS.length];
}

// The latest value of each term, coloured as its curve: the chart's legend.
function showLosses(target, series) {
  target.replaceChildren(...[...series.entries()].map(([name, data], i) => {
    const label = element("span", { text: `${name} ${Number(data.at(-1)[1]).toPrecision(3)}  ` });
    label.style.color = termColor(i);
    return label;
  }));
}

function trainingCard(name) {
  const parts = {
    status: element("p", { class: "status", text: "sending" }),
    losses: element("p", { class: "losses muted" }),
    chart: element("canvas", { class: "loss-chart", width: "480", height: "200" }),
    sample: element("img", { class: "sample", alt: "latest sample grid" }),
    cancel: element("button", { type: "button", text: "Cancel" }),
  };
  parts.card = element("article", { class: "job-card training-card", "data-status": "sending" },
    element("h3", { text: `model ${name}` }), parts.status, parts.losses,
    element("div", { class: "pair" }, parts.chart, parts.sample), parts.cancel);
  $("#trainings").prepend(parts.card);
  return parts;
}

function statusLine(record) {
  const p = record.progress || {};
  const bits = [record.status];
  if (p.phase) bits.push(`phase ${p.phase}`);
  if (p.step !== undefined) bits.push(`step ${p.step}${p.total_steps ? ` of ${p.total_steps}` : ""}`);
  if (p.epoch !== undefined) bits.push(`epoch ${p.epoch}`);
  return bits.join(" · ");
}

async function latestSample(jobId, shown) {
  const files = (await apiJson(`/v1/jobs/${jobId}/files`)).items.filter((f) => f.kind === "sample");
  if (!files.length) return null;
  const newest = files.map((f) => f.name).sort().at(-1);
  if (newest === shown) return null;
  return { name: newest, url: await blobUrl(`/v1/jobs/${jobId}/files/${newest}`) };
}

async function train(form) {
  clearError();
  const name = form.elements.name.value.trim();
  const job = await apiJson("/v1/trainings", { method: "POST", body: trainingForm(form) });
  const ui = trainingCard(name);
  ui.card.dataset.jobId = job.id;
  ui.cancel.addEventListener("click", () =>
    apiFetch(`/v1/jobs/${job.id}/cancel`, { method: "POST" }).catch(showError));
  const series = new Map();
  let sampleName = null;
  let lastPoll = 0;
  const refreshSample = () => {
    lastPoll = Date.now();
    latestSample(job.id, sampleName).then((found) => {
      if (found) [sampleName, ui.sample.src] = [found.name, found.url];
    }, showError);
  };
  const final = await watchJob(job.id, (record) => {
    ui.card.dataset.status = record.status;
    ui.status.textContent = statusLine(record);
    const p = record.progress || {};
    if (p.losses && p.step !== undefined) {
      for (const [term, value] of Object.entries(p.losses)) {
        if (!series.has(term)) series.set(term, []);
        const data = series.get(term);
        if (!data.length || data.at(-1)[0] !== p.step) data.push([p.step, value]);
      }
      showLosses(ui.losses, series);
      drawLosses(ui.chart, series);
    }
    if (Date.now() - lastPoll > SAMPLE_POLL_MS) refreshSample();
  });
  refreshSample();
  ui.cancel.remove();
  if (final.status === "succeeded") {
    await loadModels(name);
    ui.status.textContent = `succeeded: model ${name} is registered and selected in the model picker above`;
  } else if (final.error) {
    ui.status.textContent = `${final.status}: ${final.error.message} (${final.error.code})`;
  }
}

// What each mode of the API's TrainingMode needs, in words; a mode the API adds later shows under its own name.
const MODE_TEXT = {
  unpaired: "unpaired (photos + style images)",
  paired: "paired (photos + their stylized targets)",
  distill: "teacher (distil an existing model)",
};

// The form's vocabularies come from the schema the API validates with (/openapi.json), so they cannot drift
// from it: the modes (TrainingMode) and the presets (TrainPreset).
async function buildVocabularies(form) {
  const schemas = (await (await fetch("/openapi.json")).json()).components.schemas;
  const modes = schemas.TrainingMode.enum;
  const fieldset = form.querySelector("fieldset.modes");
  fieldset.append(...modes.map((mode, i) => {
    const radio = element("input", { type: "radio", name: "mode", value: mode });
    radio.checked = i === 0;
    radio.addEventListener("change", () => showModeFields(form));
    return element("label", {}, radio, ` ${MODE_TEXT[mode] || mode}`);
  }));
  form.elements.preset.replaceChildren(
    element("option", { value: "", text: "the mode's own" }),
    ...schemas.TrainPreset.enum.map((preset) => element("option", { value: preset, text: preset })),
  );
  showModeFields(form);
}

export function initTraining() {
  const form = $("#train-form");
  buildVocabularies(form).catch(showError);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    train(form).catch(showError);
  });
}
