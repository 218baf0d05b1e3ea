// The fomm web page: pick or drop two files, upload them, follow the job, show the result.
// Plain JavaScript, no dependencies; it only talks to the API of the server that served it.
"use strict";

const $ = (id) => document.getElementById(id);
const POLL_MS = 400;
let job = null;         // {id, status_url, result_url} of the job being followed
let pollTimer = null;
let drivingUrl = null;  // object URL of the chosen driving clip, for the side-by-side view
let uploading = null;   // the XMLHttpRequest of an upload in progress

function show(el, visible) { el.hidden = !visible; }

// ------------------------------------------------------------------ the server's token (--token)

const TOKEN_KEY = "fomm-token";  // sessionStorage: asked once per tab, gone when it closes

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? {Authorization: "Bearer " + token} : {};
}

async function api(url, options = {}) {
  // fetch with the token; on 401 ask for it once and try again
  const send = () => fetch(url, {...options, headers: {...(options.headers || {}), ...authHeaders()}});
  let response = await send();
  if (response.status === 401) {
    const token = (window.prompt("This server needs its access token:") || "").trim();
    if (token) {
      sessionStorage.setItem(TOKEN_KEY, token);
      response = await send();
    }
  }
  return response;
}

async function mediaUrl(url) {
  // <video> and links cannot send the token: with one, fetch the file and show a blob URL
  if (!sessionStorage.getItem(TOKEN_KEY)) return url;
  const response = await api(url);
  return response.ok ? URL.createObjectURL(await response.blob()) : url;
}

function showError(message) {
  $("error").textContent = message;
  show($("error"), Boolean(message));
}

function setStatus(text, fraction) {
  show($("progress-box"), true);
  $("status-text").textContent = text;
  if (fraction === null) $("progress").removeAttribute("value");
  else $("progress").value = fraction;
}

function busy(on) {
  $("animate").disabled = on;
  show($("cancel"), on);
}

// ------------------------------------------------------------------ file inputs and previews

function preview(kind) {
  const file = $(kind).files[0];
  const el = $(kind === "source" ? "source-preview" : "driving-preview");
  if (!file) { show(el, false); return; }
  const url = URL.createObjectURL(file);
  if (el.src && el.src.startsWith("blob:")) URL.revokeObjectURL(el.src);
  el.src = url;
  show(el, true);
  $(kind + "-hint").textContent = file.name;
  if (kind === "driving") {
    drivingUrl = url;
    loadDrivingFrames(url).catch((err) => {
      $("preview-caption").textContent = "no preview: " + err.message;
    });
  } else schedulePreview();
}

function setFile(kind, file) {
  const transfer = new DataTransfer();
  transfer.items.add(file);
  $(kind).files = transfer.files;
  preview(kind);
}

for (const kind of ["source", "driving"]) {
  const input = $(kind);
  const zone = $("drop-" + kind);
  input.addEventListener("change", () => preview(kind));
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer.files.length) setFile(kind, e.dataTransfer.files[0]);
  });
}

// ------------------------------------------------------------------ built-in examples

async function loadExamples() {
  const response = await api("/v1/examples");
  if (!response.ok) return;
  const urls = await response.json();
  show($("examples"), true);
  $("example").addEventListener("click", async () => {
    showError("");
    $("example").disabled = true;
    try {
      const [source, driving] = await Promise.all(
        [urls.source_url, urls.driving_url].map((u) => api(u).then((r) => {
          if (!r.ok) throw new Error("could not load the example (" + r.status + ")");
          return r.blob();
        })));
      setFile("source", new File([source], "example-source.png", {type: source.type}));
      setFile("driving", new File([driving], "example-driving.mp4", {type: driving.type}));
    } catch (err) {
      showError(err.message);
    } finally {
      $("example").disabled = false;
    }
  });
}

// ------------------------------------------------------------------ submit and follow

const SLIDERS = ["expression_scale", "eye_offset", "mouth_offset", "smile_offset"];

function appendOptions(data) {
  // the options of the animate form (fomm.config.AnimateOptions' names)
  const motion = document.querySelector("input[name=motion]:checked").value;
  data.append("relative", String(motion === "relative"));
  for (const name of ["adapt_scale", "crop", "multi_person", "find_best_frame", "audio"]) {
    data.append(name, String($(name).checked));
  }
  data.append("crop_driving", $("crop_driving").value);
  for (const name of ["face_index", "best_frame"]) {
    if ($(name).value !== "") data.append(name, $(name).value);
  }
  data.append("expression", String($("expression").checked));
  data.append("animation_region", $("animation_region").value);
  for (const name of SLIDERS) data.append(name, $(name).value);
  return data;
}

function formData() {
  const data = new FormData();
  data.append("source", $("source").files[0]);
  data.append("driving", $("driving").files[0]);
  return appendOptions(data);
}

// ------------------------------------------------------------------ expression and its preview

const PREVIEW_DEBOUNCE_MS = 150;
const frameVideo = document.createElement("video");  // seeks for preview frames, unseen
frameVideo.muted = true;
frameVideo.preload = "auto";
let previewTimer = null;
let previewBusy = false;   // a preview request in flight
let previewAgain = false;  // the controls changed meanwhile: one more when it returns
let referenceFrame = null; // the driving clip's first frame (the motion's reference), a JPEG blob

function showSliderValues() {
  for (const name of SLIDERS) $(name + "-value").textContent = Number($(name).value).toFixed(2);
  $("preview_time-value").textContent = Number($("preview_time").value).toFixed(1) + " s";
}

function frameAt(seconds) {
  // one frame of the driving clip as a JPEG blob
  return new Promise((resolve, reject) => {
    const grab = () => {
      const c = document.createElement("canvas");
      c.width = frameVideo.videoWidth; c.height = frameVideo.videoHeight;
      c.getContext("2d").drawImage(frameVideo, 0, 0);
      c.toBlob(resolve, "image/jpeg", 0.9);
    };
    frameVideo.onerror = () => reject(new Error("this browser cannot decode the driving video"));
    if (Math.abs(frameVideo.currentTime - seconds) < 1e-3 && frameVideo.readyState >= 2) grab();
    else { frameVideo.onseeked = grab; frameVideo.currentTime = seconds; }
  });
}

async function loadDrivingFrames(url) {
  referenceFrame = null;
  $("preview_time").disabled = true;
  frameVideo.src = url;
  await new Promise((resolve) => { frameVideo.onloadeddata = resolve; });
  $("preview_time").max = String(Math.max(0, frameVideo.duration - 0.05) || 0);
  $("preview_time").value = "0";
  $("preview_time").disabled = false;
  referenceFrame = await frameAt(0);
  showSliderValues();
  schedulePreview();
}

function schedulePreview() {
  clearTimeout(previewTimer);
  previewTimer = setTimeout(renderPreview, PREVIEW_DEBOUNCE_MS);
}

async function renderPreview() {
  if (!$("source").files[0]) return;
  if (previewBusy) { previewAgain = true; return; }
  previewBusy = true;
  $("preview").classList.add("stale");
  const data = new FormData();
  data.append("source", $("source").files[0]);
  const seconds = Number($("preview_time").value);
  try {
    if (referenceFrame) {
      data.append("driving_frame", await frameAt(seconds), "frame.jpg");
      data.append("reference_frame", referenceFrame, "reference.jpg");
    }
    appendOptions(data);
    const response = await api("/v1/preview", {method: "POST", body: data});
    if (!response.ok) {
      let body = null;
      try { body = await response.json(); } catch (err) { body = null; }
      throw new Error(errorText(body, response.status));
    }
    const img = $("preview");
    if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(await response.blob());
    show(img, true);
    $("preview-caption").textContent = referenceFrame
      ? "preview: the driving frame at " + seconds.toFixed(1) + " s" : "preview: the photo";
  } catch (err) {
    $("preview-caption").textContent = "no preview: " + err.message;
  } finally {
    $("preview").classList.remove("stale");
    previewBusy = false;
    if (previewAgain) { previewAgain = false; schedulePreview(); }
  }
}

for (const name of [...SLIDERS, "preview_time"]) {
  $(name).addEventListener("input", () => { showSliderValues(); schedulePreview(); });
}
for (const name of ["expression", "animation_region", "crop", "adapt_scale", "face_index"]) {
  $(name).addEventListener("change", schedulePreview);
}
for (const input of document.querySelectorAll("input[name=motion]")) {
  input.addEventListener("change", schedulePreview);
}
$("reset-expression").addEventListener("click", () => {
  $("expression").checked = true;
  $("animation_region").value = "all";
  $("expression_scale").value = "1";
  for (const name of ["eye_offset", "mouth_offset", "smile_offset"]) $(name).value = "0";
  showSliderValues();
  schedulePreview();
});
showSliderValues();

function errorText(body, status) {
  return (body && body.error && body.error.message) || ("request failed (HTTP " + status + ")");
}

function upload(data) {
  // XMLHttpRequest rather than fetch: it reports upload progress
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    uploading = xhr;
    xhr.open("POST", "/v1/animations");
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.responseType = "json";
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) {
        setStatus("Uploading… " + Math.round(100 * e.loaded / e.total) + "%", e.loaded / e.total);
      }
    };
    xhr.onload = () => {
      if (xhr.status === 202) resolve(xhr.response);
      else reject(new Error(errorText(xhr.response, xhr.status)));
    };
    xhr.onerror = () => reject(new Error("the upload failed (network error)"));
    xhr.onabort = () => reject(new Error("Cancelled."));
    xhr.onloadend = () => { uploading = null; };
    xhr.send(data);
  });
}

async function poll() {
  if (!job) return;
  let state;
  try {
    const response = await api(job.status_url);
    state = await response.json();
    if (!response.ok) throw new Error(errorText(state, response.status));
  } catch (err) {
    finish();
    show($("progress-box"), false);  // no stale "Animating frame …" beside the error
    showError(err.message);
    return;
  }
  const {done, total} = state.progress;
  if (state.status === "queued") setStatus("Waiting in the queue…", null);
  else if (state.status === "running") {
    setStatus("Animating frame " + done + (total ? " of " + total : ""), total ? done / total : null);
  } else if (state.status === "succeeded") {
    setStatus("Done: " + done + " frames", 1);
    showResult(state);
    finish();
    return;
  } else {
    finish();
    show($("progress-box"), false);  // no stale "Animating frame …" beside the error
    showError(state.status === "cancelled" ? "Cancelled." : state.error);
    return;
  }
  pollTimer = setTimeout(poll, POLL_MS);
}

function finish() {
  clearTimeout(pollTimer);
  job = null;
  busy(false);
}

function formatFps(fps) {
  // 30000/1001 reads as 29.97, 25 as 25
  return String(Math.round(fps * 100) / 100);
}

async function showResult(state) {
  const video = $("result-video");
  const url = await mediaUrl(state.result_url);
  video.src = url;
  $("driving-side").src = drivingUrl || "";
  $("download").href = url;
  const r = state.result || {};
  $("result-info").textContent = r.width ? r.width + "×" + r.height + ", " + formatFps(r.fps) + " fps" : "";
  show($("result"), true);
  video.scrollIntoView({behavior: "smooth", block: "nearest"});
}

// play the driving clip in step with the result
const resultVideo = $("result-video");
const drivingSide = $("driving-side");
resultVideo.addEventListener("play", () => { drivingSide.currentTime = resultVideo.currentTime; drivingSide.play(); });
resultVideo.addEventListener("pause", () => drivingSide.pause());
resultVideo.addEventListener("seeked", () => { drivingSide.currentTime = resultVideo.currentTime; });

$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("");
  show($("result"), false);
  if (!$("source").files[0] || !$("driving").files[0]) {
    showError("Choose a source photo and a driving video first.");
    return;
  }
  busy(true);
  try {
    job = await upload(formData());
  } catch (err) {
    busy(false);
    show($("progress-box"), false);
    showError(err.message);
    return;
  }
  setStatus("Queued", null);
  poll();
});

$("cancel").addEventListener("click", async () => {
  if (uploading) { uploading.abort(); return; }
  if (!job) return;
  const url = job.status_url;
  finish();
  await api(url, {method: "DELETE"});
  setStatus("Cancelled", 0);
});

loadExamples();
