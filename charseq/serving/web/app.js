// The charseq serve page: streams /v1/completions into the page as server-sent events.
// Plain script, no build step, nothing fetched from anywhere but this server.
"use strict";

const $ = (id) => document.getElementById(id);
let modelId = null;
let itemEnd = null;
let controller = null;
let samplerDetails = {};  // each sampler's help and declared options, from /v1/models
const BUNDLED = ["temperature", "argmax", "top-k", "top-p", "min-p"];

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

function status(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function loadModel() {
  const health = await (await fetch("healthz")).json();
  $("key-label").hidden = !health.auth;
  if (health.auth && !$("api-key").value) $("api-key").value = sessionStorage.getItem("charseq-key") || "";
  modelId = health.model;
  const response = await fetch("v1/models", { headers: headers() });
  if (!response.ok) {
    $("model").textContent = modelId + " (enter the API key)";
    fillSamplers(BUNDLED, []);
    return;
  }
  const info = (await response.json()).data[0].charseq;
  itemEnd = info.item_end;
  $("model").textContent = `${modelId}: ${info.description}`;
  $("prompt").placeholder = itemEnd !== null ? "the start of every item (may be empty)" : "text to continue";
  $("max-tokens").max = info.limits.max_tokens;
  $("n").max = info.limits.max_choices;
  fillSamplers(info.samplers, info.sampler_details);
}

function fillSamplers(names, details) {
  samplerDetails = Object.fromEntries(details.map((sampler) => [sampler.name, sampler]));
  const select = $("sampler");
  const chosen = select.value;
  select.replaceChildren(...names.map((name) => new Option(name, name)));
  select.value = names.includes(chosen) ? chosen : names.includes("temperature") ? "temperature" : names[0];
  showOptions();
}

// The Options box shows the chosen sampler's own options (its temperature has a box of its
// own), with their defaults as the example and their help as the tooltip.
function showOptions() {
  const sampler = samplerDetails[$("sampler").value];
  const box = $("options");
  box.value = "";
  if (!sampler) {  // not known yet (the API key is missing): any options, as typed
    box.disabled = false;
    box.placeholder = "key=value,…";
    box.title = "";
    $("temperature").disabled = $("sampler").value === "argmax";
    return;
  }
  const own = sampler.options.filter((option) => option.name !== "temperature");
  const shown = (o) => (o.required ? "…" : o.default === null ? "none" : String(o.default));
  box.disabled = own.length === 0 && !sampler.any_options;
  box.placeholder = own.length ? own.map((o) => `${o.name}=${shown(o)}`).join(",") :
    sampler.any_options ? "key=value,…" : "none";
  box.title = [sampler.help, ...own.map((o) => `${o.name}: ${o.help}`)].filter(Boolean).join("\n");
  $("temperature").disabled = $("sampler").value === "argmax" ||
    !sampler.options.some((option) => option.name === "temperature");
}

function request() {
  const sampler = $("sampler").value;
  const body = {
    model: modelId,
    prompt: $("prompt").value,
    max_tokens: Number($("max-tokens").value),
    n: Number($("n").value),
    stream: true,
  };
  body.charseq = {};
  if (sampler === "argmax") {
    body.temperature = 0;
  } else {
    const options = $("options").value.trim();
    body.charseq.sampler = options ? `${sampler}:${options}` : sampler;
    if ($("temperature").value !== "" && !$("temperature").disabled) body.temperature = Number($("temperature").value);
  }
  if ($("skip-unknown").checked) body.charseq.skip_unknown = true;
  if ($("stop").value) body.stop = $("stop").value.replace(/\\n/g, "\n");
  if ($("seed").value !== "") body.seed = Number($("seed").value);
  return body;
}

function samples(count, prime) {
  const boxes = [];
  $("output").replaceChildren();
  for (let i = 0; i < count; i++) {
    const box = document.createElement("pre");
    box.className = "sample";
    const shown = document.createElement("span");
    shown.className = "prime";
    shown.textContent = prime;
    const text = document.createElement("span");
    text.className = "text";
    box.append(shown, text);
    $("output").append(box);
    boxes.push(text);
  }
  return boxes;
}

async function generate(event) {
  event.preventDefault();
  const body = request();
  controller = new AbortController();
  $("generate").disabled = true;
  $("stop-button").disabled = false;
  status("generating…");
  const started = performance.now();
  let made = 0;
  try {
    const response = await fetch("v1/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal,
    });
    if (!response.ok) {
      const failure = await response.json().catch(() => ({ error: { message: response.statusText } }));
      throw new Error(pageWords(failure.error));
    }
    const boxes = samples(body.n, body.prompt);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    const reasons = {};
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        for (const choice of chunk.choices) {
          boxes[choice.index].textContent += choice.text;
          made += choice.text.length;
          if (choice.finish_reason) reasons[choice.index] = choice.finish_reason;
        }
      }
    }
    const seconds = (performance.now() - started) / 1000;
    const why = [...new Set(Object.values(reasons))].join(", ");
    status(`${made} characters in ${seconds.toFixed(2)} s` + (why ? ` (ended: ${why})` : ""));
  } catch (error) {
    if (error.name === "AbortError") status(`stopped after ${made} characters`);
    else status(error.message, true);
  } finally {
    $("generate").disabled = false;
    $("stop-button").disabled = true;
    controller = null;
  }
}

// An error in the page's words where the API's name a field the page sets with a control.
function pageWords(error) {
  if (error.code === "unknown_character") {
    return error.message.replace("charseq.skip_unknown leaves them out", "tick “Skip unknown characters” to leave them out");
  }
  return error.message;
}

$("form").addEventListener("submit", generate);
$("sampler").addEventListener("change", showOptions);
$("stop-button").addEventListener("click", () => controller && controller.abort());
$("api-key").addEventListener("change", () => {
  sessionStorage.setItem("charseq-key", $("api-key").value);
  loadModel().catch((error) => status(error.message, true));
});
loadModel().catch((error) => status(error.message, true));
