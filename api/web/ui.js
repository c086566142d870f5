// Small DOM helpers shared by the page's modules: building elements, the error banner, the model pickers.

import { apiJson } from "./api.js";

export const $ = (selector) => document.querySelector(selector);

export function element(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

// The API's own message (and code) in the banner at the top: never a generic "something went wrong".
export function showError(exc) {
  const banner = $("#error");
  banner.textContent = exc.code ? `${exc.message} (${exc.code})` : String(exc.message || exc);
  banner.hidden = false;
}

export function clearError() {
  $("#error").hidden = true;
  $("#error").textContent = "";
}

// Fills the model picker and the training form's teacher picker from GET /v1/models; `select` picks one.
export async function loadModels(select = null) {
  const models = (await apiJson("/v1/models")).items;
  for (const picker of [$("#model"), $("#teacher")]) {
    const keep = select || picker.value;
    const options = models.map((m) =>
      element("option", { value: m.name, text: m.public ? m.name : `${m.name} (yours)` }));
    picker.replaceChildren(...options);
    if (models.some((m) => m.name === keep)) picker.value = keep;
  }
  $("#key-status").textContent = `${models.length} model(s) available`;
  return models;
}
