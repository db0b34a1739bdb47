// Berth dashboard: the few lines of script the pages need, embedded in the server binary.
// Text from the server is only ever inserted with textContent, never as markup.
"use strict";

// ----- auto-refresh: an element with data-refresh="URL" is replaced every 2 s by the
// element with id data-refresh-target from our own fragment endpoint (server-rendered,
// escaped HTML), parsed inertly with DOMParser (scripts in it never run).
function berthRefresh(holder) {
  const url = holder.getAttribute("data-refresh");
  const target = holder.getAttribute("data-refresh-target");
  const tick = async () => {
    try {
      const answer = await fetch(url, { credentials: "same-origin", redirect: "error" });
      if (answer.ok) {
        const doc = new DOMParser().parseFromString(await answer.text(), "text/html");
        const fresh = doc.getElementById(target);
        const old = document.getElementById(target);
        if (fresh && old) {
          old.replaceWith(document.importNode(fresh, true));
        }
      }
    } catch (_) {
      // A missed refresh is tried again on the next tick.
    }
    setTimeout(tick, 2000);
  };
  setTimeout(tick, 2000);
}

// ----- ANSI SGR colours: text is split at escape sequences; each piece becomes a text
// node inside a span whose class names the colour. Nothing is ever parsed as markup.
const SGR = /\x1b\[([0-9;]*)m/g;

function berthAnsi() {
  const state = { fg: null, bold: false };
  return function (text, into, extra) {
    let last = 0;
    const emit = (piece) => {
      if (!piece) return;
      const span = document.createElement("span");
      const classes = [];
      if (extra) classes.push(extra);
      if (state.fg) classes.push(state.fg);
      if (state.bold) classes.push("ansi-bold");
      if (classes.length) span.className = classes.join(" ");
      span.textContent = piece;
      into.appendChild(span);
    };
    SGR.lastIndex = 0;
    let match;
    while ((match = SGR.exec(text)) !== null) {
      emit(text.slice(last, match.index));
      last = SGR.lastIndex;
      const codes = match[1] === "" ? [0] : match[1].split(";").map(Number);
      for (const code of codes) {
        if (code === 0) { state.fg = null; state.bold = false; }
        else if (code === 1) state.bold = true;
        else if (code === 22) state.bold = false;
        else if (code === 39) state.fg = null;
        else if (code >= 30 && code <= 37) state.fg = "ansi-" + (code - 30);
        else if (code >= 90 && code <= 97) state.fg = "ansi-" + (code - 90 + 8);
      }
    }
    emit(text.slice(last));
  };
}

// ----- the live log: an EventSource on data-stream; each event's data is a JSON string.
// window.berthLog exposes the source and the last id so a page (or a test) can see
// where the stream is and reconnect from it.
function berthLog(pre) {
  const url = pre.getAttribute("data-stream");
  const status = document.getElementById("log-state");
  const say = (text) => { if (status) status.textContent = text; };
  const ansi = { stdout: berthAnsi(), stderr: berthAnsi(), system: berthAnsi(), notes: berthAnsi() };
  const log = { source: null, lastId: "", ended: false, open: null };
  const append = (kind, event) => {
    let text;
    try { text = JSON.parse(event.data); } catch (_) { return; }
    if (typeof text !== "string") return;
    log.lastId = event.lastEventId || log.lastId;
    ansi[kind](text, pre, kind);
    pre.setAttribute("data-last-id", log.lastId);
    pre.scrollTop = pre.scrollHeight;
  };
  log.open = (from) => {
    if (log.source) log.source.close();
    const full = from ? url + "?from=" + encodeURIComponent(from) : url;
    const source = new EventSource(full);
    log.source = source;
    say("following");
    for (const kind of ["stdout", "stderr", "system", "notes"]) {
      source.addEventListener(kind, (e) => append(kind, e));
    }
    source.addEventListener("end", (e) => {
      log.lastId = e.lastEventId || log.lastId;
      log.ended = true;
      source.close();
      pre.setAttribute("data-ended", "true");
      say("finished");
    });
    source.addEventListener("failed", (e) => {
      let text = "the log stream failed";
      try { text = JSON.parse(e.data); } catch (_) {}
      source.close();
      say(String(text));
    });
    source.onerror = () => { if (!log.ended) say("reconnecting…"); };
    source.onopen = () => say("following");
  };
  window.berthLog = log;
  log.open("");
}

document.addEventListener("DOMContentLoaded", () => {
  for (const holder of document.querySelectorAll("[data-refresh]")) berthRefresh(holder);
  const pre = document.querySelector("pre[data-stream]");
  if (pre) berthLog(pre);
});
