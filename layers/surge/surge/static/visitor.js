/* Surge visitor page: a form per queued function, run through Gradio's public sse_v3 protocol.
 *
 * POST gradio_api/queue/join → {event_id}; one EventSource per page session on
 * gradio_api/queue/data?session_hash=... carries estimation, process_starts, progress,
 * process_generating (first full values, then edit lists) and process_completed for every job.
 * All URLs are relative so the page works under an API Gateway stage path.
 */
"use strict";

(function () {
  const meta = document.querySelector('meta[name="surge-max-payload-bytes"]');
  const MAX_PAYLOAD_BYTES = Number(meta && meta.content) || 1000000;
  const TICK_MS = 250;

  // ---- Gradio's sse_v3 output diffs ------------------------------------------------------------

  function applyEdit(target, path, action, value) {
    if (path.length === 0) {
      if (action === "replace") return value;
      if (action === "append") return (target == null ? "" : target) + value;
      throw new Error("Unsupported edit " + action + " at the root");
    }
    let current = target;
    for (let i = 0; i < path.length - 1; i += 1) current = current[path[i]];
    const last = path[path.length - 1];
    if (action === "replace") current[last] = value;
    else if (action === "append") current[last] += value;
    else if (action === "add") {
      if (Array.isArray(current)) current.splice(Number(last), 0, value);
      else current[last] = value;
    } else if (action === "delete") {
      if (Array.isArray(current)) current.splice(Number(last), 1);
      else delete current[last];
    } else throw new Error("Unsupported edit " + action);
    return target;
  }

  /** Apply one output's edit list, e.g. [["append", [], "tok"]] or [["replace", [], value]]. */
  function applyDiff(value, edits) {
    let result = value;
    for (const [action, path, edit] of edits) result = applyEdit(result, path, action, edit);
    return result;
  }

  // ---- small helpers ---------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  function formatSeconds(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60 ? (s % 60) + " s" : "").trim();
    return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
  }

  function formatBytes(bytes) {
    return bytes >= 1048576 ? (bytes / 1048576).toFixed(1) + " MB" : Math.round(bytes / 1024) + " KB";
  }

  function humanize(name) {
    const words = String(name).replace(/_/g, " ").trim();
    return words.charAt(0).toUpperCase() + words.slice(1);
  }

  function newSessionHash() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function detailText(body, status) {
    const detail = body && body.detail;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) return detail.map((d) => (d && d.msg) || JSON.stringify(d)).join("; ");
    return "The server answered " + status + ".";
  }

  class JoinError extends Error {
    constructor(status, detail, retryAfterS) {
      super(detail);
      this.status = status;
      this.retryAfterS = retryAfterS;
    }
  }

  // ---- the session: one event stream for all jobs of this page ----------------------------------

  class Session {
    constructor() {
      this.hash = newSessionHash();
      this.jobs = new Map(); // event_id → job, until its process_completed
      this.early = new Map(); // messages that arrived before their join answered
      this.done = new Set();
      this.source = null;
      this.failures = 0;
    }

    async submit(fnIndex, data, job) {
      let response;
      try {
        response = await fetch("gradio_api/queue/join", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ data: data, fn_index: fnIndex, session_hash: this.hash }),
        });
      } catch (error) {
        throw new JoinError(0, "Could not reach the server. Check your connection and try again.", null);
      }
      let body = null;
      try {
        body = await response.json();
      } catch (error) {
        body = null;
      }
      if (!response.ok) {
        const retry = Number(response.headers.get("Retry-After"));
        throw new JoinError(response.status, detailText(body, response.status), retry > 0 ? retry : null);
      }
      job.eventId = body.event_id;
      this.jobs.set(job.eventId, job);
      const early = this.early.get(job.eventId) || [];
      this.early.delete(job.eventId);
      for (const message of early) this.deliver(job, message);
      if (this.jobs.has(job.eventId)) this.open();
      return job.eventId;
    }

    open() {
      if (this.source && this.source.readyState !== EventSource.CLOSED) return;
      const source = new EventSource("gradio_api/queue/data?session_hash=" + encodeURIComponent(this.hash));
      this.source = source;
      source.onopen = () => {
        // A (re)connected stream replays the session's log from where the last stream closed.
        this.failures = 0;
        this.early.clear();
        for (const job of this.jobs.values()) job.seen = 0;
      };
      source.onmessage = (event) => {
        let message;
        try {
          message = JSON.parse(event.data);
        } catch (error) {
          return;
        }
        this.route(message);
      };
      source.onerror = () => {
        if (source.readyState !== EventSource.CLOSED) return; // the browser reconnects by itself
        if (this.source === source) this.source = null;
        this.retry();
      };
    }

    retry() {
      if (!this.jobs.size) return;
      this.failures += 1;
      if (this.failures > 5) {
        for (const job of Array.from(this.jobs.values())) {
          this.jobs.delete(job.eventId);
          job.lost("Lost the connection to the queue. Your request may still finish; please try again.");
        }
        return;
      }
      setTimeout(() => this.open(), 1000 * this.failures);
    }

    route(message) {
      if (message.msg === "close_stream") {
        if (this.source) this.source.close();
        this.source = null;
        if (this.jobs.size) this.open();
        return;
      }
      const eventId = message.event_id;
      if (!eventId || this.done.has(eventId)) return;
      const job = this.jobs.get(eventId);
      if (!job) {
        if (!this.early.has(eventId)) this.early.set(eventId, []);
        this.early.get(eventId).push(message);
        return;
      }
      this.deliver(job, message);
    }

    deliver(job, message) {
      if (message.msg !== "estimation") {
        // Stored events come again, in order, after a reconnect: count them and skip the ones applied.
        const index = job.seen;
        job.seen += 1;
        if (index < job.applied) return;
        job.applied += 1;
      }
      if (message.msg === "process_completed") {
        this.jobs.delete(job.eventId);
        this.done.add(job.eventId);
      }
      job.handle(message);
    }

    async cancel(job) {
      if (!job.eventId) return;
      try {
        await fetch("gradio_api/cancel", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ session_hash: this.hash, event_id: job.eventId, fn_index: job.fnIndex }),
        });
      } catch (error) {
        // The job stays in line; its own messages keep the card up to date.
      }
    }
  }

  // ---- inputs ------------------------------------------------------------------------------------

  function readAsDataUrl(blob) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(blob);
    });
  }

  function decodeImage(blob) {
    return new Promise((resolve, reject) => {
      const url = URL.createObjectURL(blob);
      const image = new Image();
      image.onload = () => {
        URL.revokeObjectURL(url);
        resolve(image);
      };
      image.onerror = () => {
        URL.revokeObjectURL(url);
        reject(new Error("This file is not an image the browser can read."));
      };
      image.src = url;
    });
  }

  /** The image as a data URL no longer than `budget` characters, scaled down as JPEG if needed. */
  async function fitImage(file, budget) {
    const original = await readAsDataUrl(file);
    if (original.length <= budget && /^data:image\/(png|jpeg|gif|webp);/.test(original)) {
      return { url: original, note: formatBytes(file.size) };
    }
    const image = await decodeImage(file);
    const canvas = document.createElement("canvas");
    let scale = Math.min(1, 2048 / Math.max(image.naturalWidth, image.naturalHeight, 1));
    for (let attempt = 0; attempt < 14; attempt += 1) {
      canvas.width = Math.max(1, Math.round(image.naturalWidth * scale));
      canvas.height = Math.max(1, Math.round(image.naturalHeight * scale));
      const context = canvas.getContext("2d");
      context.fillStyle = "#fff";
      context.fillRect(0, 0, canvas.width, canvas.height);
      context.drawImage(image, 0, 0, canvas.width, canvas.height);
      const url = canvas.toDataURL("image/jpeg", 0.85);
      if (url.length <= budget) {
        return { url: url, note: "Resized to " + canvas.width + "×" + canvas.height + " to fit the upload limit." };
      }
      scale *= 0.75;
    }
    throw new Error("This image is too large to send.");
  }

  /** One input widget: `node` to show, `value()` to read (may throw a message for the user). */
  function makeInput(kind, label, id, parameter, imageBudget) {
    const hasDefault = parameter && parameter.parameter_has_default;
    const initial = hasDefault ? parameter.parameter_default : null;
    const labelNode = el("label", { for: id, text: humanize(label) });
    if (kind === "checkbox") {
      const box = el("input", { type: "checkbox", id: id, name: label, checked: Boolean(initial) });
      return { node: el("div", { class: "field check" }, box, labelNode), value: async () => box.checked };
    }
    if (kind === "number" || kind === "slider") {
      const input = el("input", { type: "number", step: "any", inputmode: "decimal", id: id, name: label });
      if (initial !== null && initial !== undefined) input.value = String(initial);
      return {
        node: el("div", { class: "field" }, labelNode, input),
        value: async () => {
          if (input.value.trim() === "") {
            if (hasDefault) return initial;
            throw new Error(humanize(label) + " needs a number.");
          }
          const number = Number(input.value);
          if (!Number.isFinite(number)) throw new Error(humanize(label) + " needs a number.");
          return number;
        },
      };
    }
    if (kind === "json") {
      const area = el("textarea", { id: id, name: label, rows: "4", spellcheck: "false", class: "mono" });
      if (initial !== null && initial !== undefined) area.value = JSON.stringify(initial, null, 2);
      return {
        node: el("div", { class: "field" }, labelNode, area),
        value: async () => {
          if (area.value.trim() === "") return hasDefault ? initial : null;
          try {
            return JSON.parse(area.value);
          } catch (error) {
            throw new Error(humanize(label) + " is not valid JSON.");
          }
        },
      };
    }
    if (kind === "image") return makeImageInput(label, labelNode, id, imageBudget);
    const multi = kind === "textbox";
    const field = multi
      ? el("textarea", { id: id, name: label, rows: "3" })
      : el("input", { type: "text", id: id, name: label });
    if (initial !== null && initial !== undefined) field.value = String(initial);
    return { node: el("div", { class: "field" }, labelNode, field), value: async () => field.value };
  }

  function makeImageInput(label, labelNode, id, budget) {
    const file = el("input", { type: "file", accept: "image/*", id: id, name: label });
    const preview = el("img", { class: "preview", alt: "", hidden: true });
    const hint = el("span", { class: "hint", text: "Up to " + formatBytes(budget) + " is sent; larger images are scaled down." });
    let pending = null;
    file.addEventListener("change", () => {
      const chosen = file.files && file.files[0];
      pending = chosen ? fitImage(chosen, budget) : null;
      preview.hidden = true;
      if (!pending) return;
      pending.then(
        (fitted) => {
          preview.src = fitted.url;
          preview.hidden = false;
          hint.textContent = fitted.note;
        },
        (error) => {
          hint.textContent = error.message;
        },
      );
    });
    return {
      node: el("div", { class: "field" }, labelNode, file, preview, hint),
      value: async () => {
        if (!pending) throw new Error("Choose an image for " + humanize(label) + ".");
        return (await pending).url;
      },
    };
  }

  // ---- outputs -----------------------------------------------------------------------------------

  function imageSource(value) {
    if (!value) return "";
    if (typeof value === "string") return value;
    if (typeof value === "object") {
      if (value.url) return value.url;
      if (value.path) return "gradio_api/file=" + value.path.split("/").map(encodeURIComponent).join("/");
    }
    return "";
  }

  function makeOutput(kind, label) {
    const title = el("span", { class: "label", text: humanize(label) });
    if (kind === "image") {
      const image = el("img", { alt: humanize(label), hidden: true });
      const empty = el("div", { class: "value" });
      return {
        node: el("div", { class: "field output", "data-kind": kind }, title, empty, image),
        show: (value) => {
          const src = imageSource(value);
          image.hidden = !src;
          empty.hidden = Boolean(src);
          if (src) image.src = src;
          else image.removeAttribute("src");
        },
        streaming: () => {},
      };
    }
    const box = el("div", { class: kind === "json" ? "value json" : "value", "aria-live": "polite" });
    return {
      node: el("div", { class: "field output", "data-kind": kind }, title, box),
      show: (value) => {
        if (value === null || value === undefined) box.textContent = "";
        else if (kind === "json" || (typeof value === "object" && value !== null)) box.textContent = JSON.stringify(value, null, 2);
        else if (kind === "checkbox") box.textContent = value ? "✓ true" : "✗ false";
        else box.textContent = String(value);
      },
      streaming: (on) => box.classList.toggle("streaming", on),
    };
  }

  // ---- one function's card -----------------------------------------------------------------------

  class FunctionCard {
    constructor(session, dependency, components, endpoint) {
      this.session = session;
      this.dependency = dependency;
      this.fnIndex = dependency.id;
      this.name = dependency.api_name;
      this.job = null;
      this.timer = null;
      const byId = new Map(components.map((c) => [c.id, c]));
      const parameters = (endpoint && endpoint.parameters) || [];
      const imageCount = dependency.inputs.filter((id) => (byId.get(id) || {}).type === "image").length;
      const imageBudget = Math.floor((MAX_PAYLOAD_BYTES - 4096) / Math.max(1, imageCount));
      this.inputs = dependency.inputs.map((id, i) => {
        const component = byId.get(id) || { type: "textbox", props: {} };
        const label = (component.props && component.props.label) || "input " + i;
        return makeInput(component.type, label, "in-" + this.name + "-" + i, parameters[i], imageBudget);
      });
      this.outputs = dependency.outputs.map((id, i) => {
        const component = byId.get(id) || { type: "textbox", props: {} };
        const label = dependency.outputs.length === 1 ? "Result" : (component.props && component.props.label) || "output " + i;
        return makeOutput(component.type, label);
      });
      this.node = this.render();
    }

    render() {
      const tags = el("div", { class: "tags" });
      const types = this.dependency.types || {};
      if (types.generator) tags.append(el("span", { class: "tag", text: "streams" }));
      if (this.dependency.batch) tags.append(el("span", { class: "tag", text: "batched ≤ " + this.dependency.max_batch_size }));
      const limit = this.dependency.concurrency_limit;
      tags.append(el("span", { class: "tag", text: limit ? limit + " at a time" : "no concurrency limit" }));
      this.runButton = el("button", { type: "submit", class: "primary", text: "Run" });
      this.cancelButton = el("button", { type: "button", class: "cancel", text: "Leave the queue", hidden: true });
      this.cancelButton.addEventListener("click", () => this.leave());
      const form = el("form", { novalidate: true }, ...this.inputs.map((i) => i.node), el("div", { class: "actions" }, this.runButton, this.cancelButton));
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        this.run();
      });
      this.place = el("span", { class: "place" });
      this.eta = el("span", { class: "eta" });
      this.progressFill = el("div", { class: "progress-fill" });
      this.progress = el("div", { class: "progress", role: "progressbar", "aria-label": "progress", hidden: true }, this.progressFill);
      this.progressLabel = el("div", { class: "progress-label", hidden: true });
      this.status = el("div", { class: "status", hidden: true }, el("div", { class: "status-line" }, this.place, this.eta), this.progress, this.progressLabel);
      this.notice = el("div", { class: "notice", role: "alert", hidden: true });
      const outputs = el("div", { class: "outputs" }, ...this.outputs.map((o) => o.node));
      return el(
        "section",
        { class: "card", id: "fn-" + this.name, "data-fn": this.name },
        el("header", {}, el("h2", { text: humanize(this.name) }), tags),
        form,
        this.status,
        this.notice,
        outputs,
      );
    }

    showNotice(kind, headline, detail) {
      this.notice.className = "notice " + kind;
      this.notice.replaceChildren(el("strong", { text: headline }));
      if (detail) this.notice.append(el("span", { text: detail }));
      this.notice.hidden = false;
    }

    countdown(deadline, format) {
      clearInterval(this.timer);
      const tick = () => {
        if (deadline === null) {
          this.eta.textContent = "";
          return;
        }
        const left = (deadline - Date.now()) / 1000;
        this.eta.textContent = format(left);
      };
      tick();
      this.timer = setInterval(tick, TICK_MS);
    }

    async run() {
      if (this.job) return;
      let data;
      try {
        data = await Promise.all(this.inputs.map((input) => input.value()));
      } catch (error) {
        this.showNotice("error", "Check the inputs.", error.message);
        return;
      }
      const job = { fnIndex: this.fnIndex, eventId: null, seen: 0, applied: 0, values: null, started: false };
      job.handle = (message) => this.onMessage(job, message);
      job.lost = (text) => this.finish(job, () => this.showNotice("error", "Connection lost.", text));
      this.job = job;
      this.notice.hidden = true;
      this.runButton.disabled = true;
      this.runButton.textContent = "Waiting…";
      this.status.hidden = false;
      this.status.dataset.state = "joining";
      this.place.textContent = "Joining the queue…";
      this.place.removeAttribute("data-rank");
      this.progress.hidden = true;
      this.progressLabel.hidden = true;
      this.countdown(null);
      for (const output of this.outputs) output.show(null);
      try {
        await this.session.submit(this.fnIndex, data, job);
      } catch (error) {
        this.finish(job, () => this.refused(error));
      }
    }

    refused(error) {
      if (!(error instanceof JoinError) || error.status !== 503) {
        this.showNotice("error", "The request was not accepted.", error.message);
        return;
      }
      const wait = error.retryAfterS || 5;
      this.showNotice("warn", "The queue is full right now.", error.message + " Please try again in " + formatSeconds(wait) + ".");
      this.notice.dataset.retryAfter = String(wait);
      const until = Date.now() + wait * 1000;
      this.runButton.disabled = true;
      const tick = () => {
        const left = Math.ceil((until - Date.now()) / 1000);
        if (left > 0 && !this.job) {
          this.runButton.textContent = "Try again in " + formatSeconds(left);
          return;
        }
        clearInterval(retryTimer);
        if (!this.job) {
          this.runButton.disabled = false;
          this.runButton.textContent = "Try again";
        }
      };
      const retryTimer = setInterval(tick, TICK_MS);
      tick();
    }

    leave() {
      if (this.job) this.session.cancel(this.job);
      this.cancelButton.disabled = true;
    }

    finish(job, show) {
      if (this.job !== job) return;
      this.job = null;
      clearInterval(this.timer);
      this.eta.textContent = "";
      this.cancelButton.hidden = true;
      this.runButton.disabled = false;
      this.runButton.textContent = "Run";
      this.progress.hidden = true;
      this.progressLabel.hidden = true;
      for (const output of this.outputs) output.streaming(false);
      this.status.hidden = true;
      show();
    }

    onMessage(job, message) {
      if (this.job !== job) return;
      const handler = {
        estimation: () => this.onEstimation(message),
        process_starts: () => this.onStart(message),
        progress: () => this.onProgress(message),
        process_generating: () => this.onGenerating(job, message),
        process_completed: () => this.onCompleted(job, message),
      }[message.msg];
      if (handler) handler();
    }

    onEstimation(message) {
      if (this.job.started) return;
      const rank = Number(message.rank) || 0;
      const size = Math.max(Number(message.queue_size) || 0, rank + 1);
      this.status.dataset.state = "waiting";
      this.place.dataset.rank = String(rank);
      this.place.textContent = rank === 0 ? "You are next in line" : "Place in queue: " + (rank + 1) + " of " + size;
      this.cancelButton.hidden = false;
      this.cancelButton.disabled = false;
      const eta = message.rank_eta;
      this.countdown(eta === null || eta === undefined ? null : Date.now() + eta * 1000, (left) =>
        left > 0.5 ? "about " + formatSeconds(left) + " left" : "any moment now",
      );
    }

    onStart(message) {
      this.job.started = true;
      this.status.dataset.state = "running";
      this.place.textContent = "Running";
      this.place.removeAttribute("data-rank");
      this.cancelButton.hidden = true;
      this.runButton.textContent = "Running…";
      this.progress.hidden = false;
      this.progress.classList.add("indeterminate");
      this.progressFill.style.width = "";
      const eta = message.eta;
      this.countdown(eta === null || eta === undefined ? null : Date.now() + eta * 1000, (left) =>
        left > 0.5 ? "about " + formatSeconds(left) + " left" : "finishing…",
      );
    }

    onProgress(message) {
      const unit = (message.progress_data || [])[0];
      if (!unit) return;
      let fraction = null;
      let label = "";
      if (unit.progress !== null && unit.progress !== undefined) {
        fraction = Number(unit.progress);
        label = Math.round(fraction * 100) + "%";
      } else if (unit.index !== null && unit.length) {
        fraction = unit.index / unit.length;
        label = unit.index + " / " + unit.length + " " + (unit.unit || "");
      } else if (unit.index !== null) {
        label = unit.index + " " + (unit.unit || "");
      }
      this.progress.hidden = false;
      if (fraction !== null) {
        this.progress.classList.remove("indeterminate");
        this.progressFill.style.width = Math.max(0, Math.min(1, fraction)) * 100 + "%";
        this.progress.setAttribute("aria-valuenow", String(Math.round(fraction * 100)));
      }
      this.progressLabel.hidden = false;
      this.progressLabel.textContent = (unit.desc ? unit.desc + " · " : "") + label.trim();
    }

    onGenerating(job, message) {
      const data = (message.output && message.output.data) || [];
      if (job.values === null) job.values = data.slice();
      else job.values = job.values.map((value, i) => applyDiff(value, data[i] || []));
      this.status.dataset.state = "streaming";
      this.outputs.forEach((output, i) => {
        output.show(job.values[i]);
        output.streaming(true);
      });
    }

    onCompleted(job, message) {
      const output = message.output || {};
      if (!message.success) {
        const text = output.error || "The function failed. Please try again.";
        this.finish(job, () => this.showNotice("error", output.title || "Error", text));
        return;
      }
      if (!Array.isArray(output.data)) {
        this.finish(job, () => this.showNotice("info", "You left the queue.", ""));
        return;
      }
      this.outputs.forEach((out, i) => out.show(output.data[i]));
      const took = typeof output.duration === "number" ? " in " + output.duration.toFixed(output.duration < 10 ? 2 : 0) + " s" : "";
      this.finish(job, () => this.showNotice("info", "Done" + took + ".", ""));
    }
  }

  // ---- page --------------------------------------------------------------------------------------

  async function getJson(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(url + " answered " + response.status);
    return response.json();
  }

  async function start() {
    const notice = document.getElementById("page-notice");
    let config;
    let info = { named_endpoints: {} };
    try {
      [config, info] = await Promise.all([getJson("config"), getJson("gradio_api/info").catch(() => info)]);
    } catch (error) {
      notice.textContent = "Could not load the app: " + error.message + ". Reload the page to try again.";
      notice.hidden = false;
      document.getElementById("title").textContent = "Surge";
      return;
    }
    document.title = config.title || "Surge";
    document.getElementById("title").textContent = config.title || "Surge";
    const session = new Session();
    const list = document.getElementById("functions");
    for (const dependency of config.dependencies || []) {
      const endpoint = (info.named_endpoints || {})["/" + dependency.api_name];
      list.append(new FunctionCard(session, dependency, config.components || [], endpoint).node);
    }
    document.body.dataset.ready = "true";
  }

  window.surgePages = { applyDiff: applyDiff, formatSeconds: formatSeconds };
  start();
})();
