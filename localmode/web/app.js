// The search page: plain JavaScript, no build step. It calls the query API by URL, so the same file
// works from the local server (same origin) and against a deployed API (base URL + x-api-key).
"use strict";

const INLINE_MAX_BYTES = 4 * 1024 * 1024; // the API's inline limit (handlers/api_input.py)
const RESIZE_MAX_SIDE = 1600; // larger photos are resized here; the model sees 224 px anyway
// The media types the API takes as raw image bodies: the table of simsearch/formats.py, which
// tests/unit/test_formats.py holds this list to.
const SENDABLE_TYPES = ["image/jpeg", "image/png", "image/gif", "image/webp", "image/avif", "image/bmp", "image/tiff"];
const FORMAT_NAMES = SENDABLE_TYPES.map((type) => type.slice("image/".length).toUpperCase()).join(", ");
const STORAGE = { base: "simsearch.apiBase", key: "simsearch.apiKey" };

const $ = (id) => document.getElementById(id);
let lastQuery = null; // {kind: "image", blob, name} or {kind: "id", id, url, name}
let lastResults = []; // the results on screen, for "Duplicates of these results"
let lastDuplicates = null; // what the duplicates view shows: {kind: "one", result} or {kind: "results"}

function apiBase() {
  const saved = (localStorage.getItem(STORAGE.base) || "").trim().replace(/\/+$/, "");
  return saved || window.location.origin;
}

function apiHeaders(extra = {}) {
  const key = (localStorage.getItem(STORAGE.key) || "").trim();
  return key ? { ...extra, "x-api-key": key } : extra;
}

// One message for every failure: the API's {"error": {"code", "message"}}, API Gateway's {"message"},
// or the network error when the API cannot be reached at all.
async function callApi(path, init = {}) {
  const url = apiBase() + path;
  let response;
  try {
    response = await fetch(url, { ...init, headers: apiHeaders(init.headers) });
  } catch (error) {
    throw new Error(`Could not reach the API at ${apiBase()} (${error.message}). Check the API settings.`);
  }
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!response.ok) {
    const detail = body && (body.error || body);
    const message = (detail && detail.message) || text || response.statusText;
    const code = detail && detail.code ? ` [${detail.code}]` : "";
    throw new Error(`${explainStatus(response.status)}: ${message}${code}`);
  }
  return body;
}

function explainStatus(status) {
  const reasons = {
    400: "The API could not use this request",
    403: "The API refused the request (is the API key right?)",
    404: "Not found",
    413: "The image is too large",
    415: "The API does not take this kind of file",
    429: "Too many requests; try again in a moment",
    503: "The index is not available right now; try again shortly",
  };
  return reasons[status] || `The API answered ${status}`;
}

function showMessage(text) {
  const message = $("message");
  message.textContent = text;
  message.hidden = !text;
}

async function refreshHealth() {
  try {
    const health = await callApi("/health");
    $("health").textContent =
      `Model ${health.model_id} · ${health.documents} image${health.documents === 1 ? "" : "s"} indexed`;
  } catch (error) {
    $("health").textContent = `API not ready: ${error.message}`;
  }
}

function searchOptions() {
  const k = Number.parseInt($("k").value, 10);
  const label = $("label").value.trim();
  return { k: Number.isFinite(k) ? k : 12, label, collapse: $("collapse").checked };
}

// Large photos are re-encoded in the browser so they fit the inline limit; anything the browser
// cannot decode is sent as it is, and the API's own message says what is wrong with it.
async function sendableImage(file) {
  if (file.size <= INLINE_MAX_BYTES && SENDABLE_TYPES.includes(file.type)) {
    return { blob: file, note: "" };
  }
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    return { blob: file, note: "" };
  }
  const scale = Math.min(1, RESIZE_MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
  const megabytes = (file.size / 1024 / 1024).toFixed(1);
  return { blob, note: ` (re-encoded in the browser from ${megabytes} MB, ${bitmap.width}×${bitmap.height})` };
}

async function searchByFile(file) {
  if (file.type && !file.type.startsWith("image/")) {
    showMessage(`“${file.name}” is not an image (${file.type}). Choose one of: ${FORMAT_NAMES}.`);
    return;
  }
  const { blob, note } = await sendableImage(file);
  lastQuery = { kind: "image", blob, name: file.name, note };
  showQuery(URL.createObjectURL(blob), `${file.name}${note}`);
  await runQuery();
}

async function searchById(result) {
  lastQuery = { kind: "id", id: result.id, url: result.url, name: result.key };
  showQuery(result.url, `${result.key} (more like this indexed image)`);
  await runQuery();
}

function showQuery(src, caption) {
  $("query-view").hidden = false;
  $("query-image").hidden = false;
  $("query-image").onerror = () => { $("query-image").hidden = true; }; // e.g. a file that is no image
  $("query-image").src = src;
  $("query-image").alt = `Query image: ${caption}`;
  $("query-caption").textContent = caption;
  $("search-again").disabled = false;
}

async function runQuery() {
  if (!lastQuery) return;
  const { k, label, collapse } = searchOptions();
  showMessage("");
  $("results-summary").textContent = "Searching…";
  try {
    let response;
    if (lastQuery.kind === "image") {
      const params = new URLSearchParams({ k: String(k) });
      if (label) params.set("label", label);
      if (collapse) params.set("collapse_duplicates", "true");
      const type = lastQuery.blob.type || "application/octet-stream";
      response = await callApi(`/search?${params}`, {
        method: "POST", headers: { "Content-Type": type }, body: lastQuery.blob,
      });
    } else {
      const body = { id: lastQuery.id, k };
      if (label) body.filter = { label };
      if (collapse) body.collapse_duplicates = true;
      response = await callApi("/search", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
    }
    renderResults(response);
  } catch (error) {
    $("results-summary").textContent = "No results.";
    $("results").replaceChildren();
    lastResults = [];
    $("find-duplicates").disabled = true;
    showMessage(error.message);
  }
  refreshHealth();
}

function renderResults(response) {
  const results = response.results || [];
  $("results-summary").textContent = results.length
    ? `${results.length} most similar, best first (${response.took_ms} ms, index ${response.index}).`
    : "Nothing matched; try another label or none.";
  lastResults = results;
  $("results").replaceChildren(...results.map(resultItem));
  $("find-duplicates").disabled = results.length === 0;
  rememberLabels(results);
}

function resultItem(result, position) {
  const item = document.createElement("li");
  item.className = "result";
  item.dataset.key = result.key;
  const button = document.createElement("button");
  button.type = "button";
  const label = result.label || "no label";
  const similarity = result.similarity.toFixed(3);
  button.setAttribute("aria-label",
    `Result ${position + 1}: ${result.key}, label ${label}, similarity ${similarity}. Search for images like it.`);
  const image = document.createElement("img");
  image.src = result.url;
  image.alt = `${result.key} (${label})`;
  image.loading = "lazy";
  const caption = document.createElement("span");
  caption.className = "caption";
  caption.innerHTML = '<span class="key"></span><span class="meta"><span class="label"></span>' +
    '<span class="similarity"></span></span>';
  caption.querySelector(".key").textContent = result.key;
  caption.querySelector(".label").textContent = label;
  caption.querySelector(".similarity").textContent = similarity;
  caption.querySelector(".similarity").title = "cosine similarity (1 = identical)";
  button.append(image, caption);
  button.addEventListener("click", () => searchById(result));
  item.append(button, duplicatesLine(result, position));
  return item;
}

// Under each result: what the API says about its copies among the results, and a button that shows
// its exact and near duplicates in the whole index.
function duplicatesLine(result, position) {
  const line = document.createElement("div");
  line.className = "duplicates-line";
  const note = document.createElement("span");
  note.className = "duplicate-note";
  const collapsed = result.collapsed || [];
  if (result.duplicate_of) {
    const earlier = lastResults.findIndex((other) => other.id === result.duplicate_of);
    note.textContent = `same bytes as #${earlier + 1}`;
  } else if (collapsed.length) {
    note.textContent = `+${collapsed.length} cop${collapsed.length === 1 ? "y" : "ies"} folded`;
  }
  const show = document.createElement("button");
  show.type = "button";
  show.className = "link";
  show.textContent = "Duplicates";
  show.setAttribute("aria-label", `Duplicates of result ${position + 1}: ${result.key}`);
  show.addEventListener("click", () => showDuplicatesOf(result));
  line.append(note, show);
  return line;
}

function nearThreshold() {
  const raw = $("near-threshold").value.trim();
  return raw ? `?threshold=${encodeURIComponent(raw)}` : "";
}

async function fetchDuplicates(id) {
  return callApi(`/images/${encodeURIComponent(id)}/duplicates${nearThreshold()}`);
}

async function showDuplicatesOf(result) {
  lastDuplicates = { kind: "one", result };
  openDuplicatesView(`Looking for duplicates of ${result.key}…`);
  try {
    const found = await fetchDuplicates(result.id);
    renderClusters([found], `${result.key}: ${describe(found)}.`);
  } catch (error) {
    duplicatesFailed(error);
  }
}

// One row per cluster: each result's duplicates, skipping results already shown in an earlier row.
async function showDuplicatesOfResults() {
  lastDuplicates = { kind: "results" };
  const results = lastResults;
  openDuplicatesView(`Looking for duplicates of ${results.length} results…`);
  try {
    const answers = await Promise.all(results.map((result) => fetchDuplicates(result.id)));
    const shown = new Set();
    const clusters = [];
    for (const found of answers) {
      if (shown.has(found.id) || (!found.exact.length && !found.near.length)) continue;
      clusters.push(found);
      for (const member of [found, ...found.exact, ...found.near]) shown.add(member.id);
    }
    const summary = clusters.length
      ? `${clusters.length} of the ${results.length} results have duplicates (near: ${nearRule(answers[0])}).`
      : `None of the ${results.length} results has a duplicate (near: ${nearRule(answers[0])}).`;
    renderClusters(clusters, summary);
  } catch (error) {
    duplicatesFailed(error);
  }
}

function describe(found) {
  const exact = `${found.exact.length} exact duplicate${found.exact.length === 1 ? "" : "s"}`;
  const near = `${found.near.length} near duplicate${found.near.length === 1 ? "" : "s"}`;
  return `${exact} (same bytes), ${near} (${nearRule(found)})`;
}

// How the API decided near duplicates: by comparing pixels, unless a threshold was asked for.
function nearRule(found) {
  const check = found.picture_check;
  return check
    ? `similarity ≥ ${check.gate} and pixels matching ≥ ${check.threshold}`
    : `similarity ≥ ${found.threshold}`;
}

function openDuplicatesView(status) {
  showMessage("");
  $("duplicates-view").hidden = false;
  $("duplicates-summary").textContent = status;
  $("clusters").replaceChildren();
  $("duplicates-view").scrollIntoView({ block: "nearest" });
}

function duplicatesFailed(error) {
  $("duplicates-summary").textContent = "No duplicates shown.";
  showMessage(error.message);
}

function renderClusters(clusters, summary) {
  $("duplicates-summary").textContent = summary;
  $("clusters").replaceChildren(...clusters.map(clusterItem));
}

// A cluster side by side: the image, then its exact duplicates, then its near ones, most similar first.
function clusterItem(found) {
  const item = document.createElement("li");
  item.className = "cluster";
  item.dataset.id = found.id;
  const members = document.createElement("ol");
  members.className = "members";
  members.append(
    member({ ...found, similarity: 1 }, "image", "this image"),
    ...found.exact.map((each) => member(each, "exact", "same bytes")),
    ...found.near.map((each) => member(each, "near", nearNote(each))),
  );
  item.append(members);
  return item;
}

function nearNote(each) {
  const pixels = each.match == null ? "" : ` · pixels ${each.match.toFixed(3)}`; // null: not compared
  return `near · ${each.similarity.toFixed(3)}${pixels}`;
}

function member(image, kind, note) {
  const item = document.createElement("li");
  item.className = `member ${kind}`;
  item.dataset.kind = kind;
  item.dataset.key = image.key;
  const figure = document.createElement("figure");
  const picture = document.createElement("img");
  picture.src = image.url;
  picture.alt = `${image.key} (${note})`;
  picture.loading = "lazy";
  const caption = document.createElement("figcaption");
  caption.innerHTML = '<span class="key"></span><span class="kind"></span>';
  caption.querySelector(".key").textContent = image.key;
  caption.querySelector(".kind").textContent = note;
  figure.append(picture, caption);
  item.append(figure);
  return item;
}

function refreshDuplicates() {
  if (!lastDuplicates) return;
  if (lastDuplicates.kind === "one") showDuplicatesOf(lastDuplicates.result);
  else showDuplicatesOfResults();
}

function rememberLabels(results) {
  const list = $("known-labels");
  const known = new Set([...list.options].map((option) => option.value));
  for (const result of results) {
    if (result.label && !known.has(result.label)) {
      known.add(result.label);
      list.append(new Option(result.label));
    }
  }
}

function setUpDropZone() {
  const zone = $("drop-zone");
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.add("dragging"); });
  }
  for (const name of ["dragleave", "drop"]) {
    zone.addEventListener(name, () => zone.classList.remove("dragging"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    const [file] = event.dataTransfer.files;
    if (file) searchByFile(file);
  });
}

function setUpSettings() {
  $("api-base").value = localStorage.getItem(STORAGE.base) || "";
  $("api-key").value = localStorage.getItem(STORAGE.key) || "";
  $("settings-form").addEventListener("submit", (event) => {
    event.preventDefault();
    localStorage.setItem(STORAGE.base, $("api-base").value.trim());
    localStorage.setItem(STORAGE.key, $("api-key").value.trim());
    refreshHealth();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("file").addEventListener("change", (event) => {
    const [file] = event.target.files;
    if (file) searchByFile(file);
  });
  $("query").addEventListener("submit", (event) => { event.preventDefault(); runQuery(); });
  $("find-duplicates").addEventListener("click", () => showDuplicatesOfResults());
  $("duplicates-form").addEventListener("submit", (event) => { event.preventDefault(); refreshDuplicates(); });
  $("duplicates-close").addEventListener("click", () => {
    $("duplicates-view").hidden = true;
    lastDuplicates = null;
  });
  setUpDropZone();
  setUpSettings();
  refreshHealth();
});
