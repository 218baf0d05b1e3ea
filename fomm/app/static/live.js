// Live mode: camera frames → WebSocket /v1/live → animated frames on a canvas.
// Two frames in flight at most: one animating on the server and the next one waiting there, so
// the server never waits for the page's round trip; a new camera frame is grabbed when an answer
// comes, so the newest frame always wins and nothing queues (the server drops as well).
"use strict";

const $ = (id) => document.getElementById(id);
const video = $("camera"), canvas = $("result"), statusLine = $("status"), stats = $("stats");
// ?inflight=1 on the page's address: one frame at a time (benchmarks/live_page.py compares)
const IN_FLIGHT = Math.max(1, Number(new URLSearchParams(location.search).get("inflight")) || 2);
let photoBlob = null, socket = null, stream = null, frames = 0, started = 0;
let sent = [];  // send times of the frames in flight, oldest first

function say(text) { statusLine.textContent = text; }

async function camera() {
  if (!stream) {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
    video.srcObject = stream;
    await video.play();
  }
  return stream;
}

function grab(type = "image/jpeg") {
  const c = document.createElement("canvas");
  c.width = video.videoWidth; c.height = video.videoHeight;
  c.getContext("2d").drawImage(video, 0, 0);
  return new Promise((resolve) => c.toBlob(resolve, type, 0.8));
}

function showPhoto(blob) {
  photoBlob = blob;
  const img = $("photo-preview");
  img.src = URL.createObjectURL(blob);
  img.hidden = false;
}

$("photo").addEventListener("change", (e) => { if (e.target.files[0]) showPhoto(e.target.files[0]); });

$("snapshot").addEventListener("click", async () => {
  try { await camera(); showPhoto(await grab("image/png")); say("Snapshot taken: Start."); }
  catch (err) { say(`No camera: ${err.message}`); }
});

async function sendFrame() {
  if (!socket || socket.readyState !== WebSocket.OPEN) return;
  const blob = await grab();
  sent.push(performance.now());
  socket.send(await blob.arrayBuffer());
}

async function draw(data) {
  const bitmap = await createImageBitmap(new Blob([data], { type: "image/jpeg" }));
  canvas.width = bitmap.width; canvas.height = bitmap.height;
  canvas.getContext("2d").drawImage(bitmap, 0, 0);
}

$("start").addEventListener("click", async () => {
  if (!photoBlob) { say("Pick a photo first (or take a snapshot)."); return; }
  try { await camera(); } catch (err) { say(`No camera: ${err.message}`); return; }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  let token = sessionStorage.getItem("fomm-token");  // the page at / stores it (--token)
  if (!token && (await fetch("/healthz")).status === 401) {
    token = (window.prompt("This server needs its access token:") || "").trim();
    sessionStorage.setItem("fomm-token", token);
  }
  // browsers cannot set headers on a WebSocket: the token travels as a subprotocol
  socket = new WebSocket(`${scheme}://${location.host}/v1/live`,
                         token ? ["fomm", `bearer.${token}`] : []);
  socket.binaryType = "arraybuffer";
  let info = null, ready = false;
  socket.onopen = async () => { say("Connecting…"); socket.send(await photoBlob.arrayBuffer()); };
  socket.onmessage = async (event) => {
    if (typeof event.data === "string") {
      const message = JSON.parse(event.data);
      if (message.type === "notice") { say(message.message); return; }
      if (message.type === "skipped") {  // a frame the server could not use: send another
        say(message.message); sent.shift(); sendFrame(); return;
      }
      const previous = info;
      info = message;
      if (info.type === "error") { say(info.message); socket.close(); }
      if (info.type === "frame") {  // frames the server dropped get no answer: send others
        const dropped = Math.max(0, info.dropped - ((previous && previous.dropped) || 0));
        sent.splice(0, dropped);
        for (let i = 0; i < dropped; i += 1) sendFrame();
      }
      return;
    }
    await draw(event.data);
    if (!ready) {  // the still photo, right after "ready"
      ready = true; frames = 0; started = performance.now(); sent = [];
      say("Live: look at the camera the way the photo does, or press Re-take.");
      $("reference").disabled = false; $("stop").disabled = false; $("start").disabled = true;
      socket.send(expressionMessage());  // the controls as they are now
      for (let i = 1; i < IN_FLIGHT; i += 1) sendFrame();  // the last one is sent below
    } else {
      frames += 1;
      const fps = frames / ((performance.now() - started) / 1000);
      const roundTrip = performance.now() - (sent.shift() ?? performance.now());
      stats.textContent = `${fps.toFixed(1)} fps · ${roundTrip.toFixed(0)} ms` +
        (info && !info.face ? " · no face" : "") +
        (info && info.expression ? ` · ${info.expression.animation_region} ` +
         `×${info.expression.expression_scale}` : " · expression off");
      document.body.dataset.frames = String(frames);
      document.body.dataset.latency = roundTrip.toFixed(0);
    }
    sendFrame();
  };
  socket.onclose = () => {
    $("reference").disabled = true; $("stop").disabled = true; $("start").disabled = false;
    if (ready) say("Stopped.");
  };
});

// the expression layer: its controls go over the socket as {"type": "expression", ...}
const SLIDERS = ["expression_scale", "eye_offset", "mouth_offset", "smile_offset"];
let expressionTimer = null;

function expressionMessage() {
  const message = { type: "expression", expression: $("expression").checked,
                    animation_region: $("animation_region").value };
  for (const name of SLIDERS) message[name] = Number($(name).value);
  return JSON.stringify(message);
}

function sendExpression() {
  for (const name of SLIDERS) $(name + "-value").textContent = Number($(name).value).toFixed(2);
  clearTimeout(expressionTimer);
  expressionTimer = setTimeout(() => {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(expressionMessage());
  }, 100);
}

for (const name of SLIDERS) $(name).addEventListener("input", sendExpression);
for (const name of ["expression", "animation_region"]) $(name).addEventListener("change", sendExpression);
sendExpression();

$("reference").addEventListener("click", () => {
  if (socket) socket.send(JSON.stringify({ type: "reference" }));
});
$("stop").addEventListener("click", () => { if (socket) socket.close(); });
