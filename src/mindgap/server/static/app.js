// mindgap web page: plain JS, no build, no CDN. Talks to the JSON API of the same server.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  gap: null,          // current gap corrector
  gaps: [],           // available correctors (fitted + naive)
  image: null,        // File chosen as the query image
  key: sessionStorage.getItem("mindgap-key") || "",
  lastQuery: null,    // {text} or {image}
  asked: false,       // the answer panel shows an answer for lastQuery
  seq: 0,             // drops responses of superseded requests
  objectUrls: [],
};

// ---------------------------------------------------------------- API
class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(path, opts = {}) {
  const headers = Object.assign({}, opts.headers || {});
  if (state.key) headers["X-API-Key"] = state.key;
  const res = await fetch(path, Object.assign({}, opts, { headers }));
  const ctype = res.headers.get("content-type") || "";
  if (!res.ok) {
    let code = "http_" + res.status, msg = res.statusText;
    if (ctype.includes("application/json")) {
      const body = await res.json().catch(() => null);
      if (body && body.error) { code = body.error.code; msg = body.error.message; }
    }
    if (res.status === 401) $("keybox").classList.remove("hidden");
    throw new ApiError(res.status, code, msg);
  }
  return opts.raw ? res : res.json();
}

function showError(err) {
  const box = $("error");
  box.replaceChildren();
  if (!err) { box.classList.add("hidden"); return; }
  const code = document.createElement("code");
  code.textContent = err.code || "error";
  box.append(code, " ", err.message || String(err));
  box.classList.remove("hidden");
}

// ---------------------------------------------------------------- store info + gap toggle
async function loadStats() {
  try {
    const s = await api("/stats");
    const info = $("store-info");
    info.replaceChildren();
    const c = s.counts || { text: 0, image: 0 };
    const line1 = document.createElement("div");
    line1.append(bold(String(c.text)), " texts · ", bold(String(c.image)), " images");
    const line2 = document.createElement("div");
    line2.textContent = `${s.encoder || "?"} · ${shortUri(s.store || "no store")}`;
    info.append(line1, line2);
    showError(s.problem ? { code: "store", message: s.problem } : null);
    const gaps = (s.gap_correctors || ["naive"]).slice();
    const order = ["naive", "zscore"];
    gaps.sort((a, b) => rankOf(order, a) - rankOf(order, b) || a.localeCompare(b));
    state.gaps = gaps;
    state.gap = state.gap || s.default_gap || "naive";
    if (!gaps.includes(state.gap)) state.gap = gaps[0];
    renderGapToggle();
    $("keybox").classList.add("hidden");
  } catch (err) {
    $("store-info").textContent = "not connected";
    showError(err);
  }
}

const rankOf = (order, x) => (order.includes(x) ? order.indexOf(x) : order.length);
const shortUri = (u) => (u.length > 48 ? "…" + u.slice(-47) : u);
function bold(text) { const b = document.createElement("b"); b.textContent = text; return b; }

const GAP_HINT = {
  naive: "raw cosine over the mixed store: the modality gap buries one modality",
  zscore: "per-modality z-score of the cosine (μ, σ fitted per modality)",
  auto: "calibrated P(relevant), fitted label-free on this store's own texts when it was indexed: both modalities",
  calibrated: "calibrated P(relevant | cosine, modality), query-adaptive over the candidate list",
};

function renderGapToggle() {
  const box = $("gap-toggle");
  box.replaceChildren();
  for (const g of state.gaps) {
    const b = document.createElement("button");
    b.type = "button";
    b.setAttribute("role", "radio");
    b.dataset.gap = g;
    b.setAttribute("aria-checked", String(g === state.gap));
    b.append(g);
    b.title = GAP_HINT[g] || `gap corrector ${g}`;
    b.addEventListener("click", () => {
      if (state.gap === g) return;
      state.gap = g;
      renderGapToggle();
      rerun();
    });
    box.append(b);
  }
}

// ---------------------------------------------------------------- search / ask
function params() {
  return { k: $("k").value, modality: $("modality").value, gap: state.gap, minProb: $("min-prob").value,
           hybrid: $("hybrid").checked };
}

// the P(relevant) cut-off applies to probability correctors only (calibrated; 'auto' is one)
const givesProb = (g) => g === "auto" || /^calibrated/.test(g || "");

async function search(q) {
  const seq = ++state.seq;
  const p = params();
  const results = $("results");
  results.dataset.state = "loading";
  setBusy(true);
  try {
    let data;
    if (q.image) {
      $("compare").replaceChildren();
      $("compare").dataset.state = "none";
      const fd = new FormData();
      fd.append("image", q.image, q.image.name || "query-image");
      fd.append("k", p.k);
      if (p.gap) fd.append("gap", p.gap);
      if (p.modality) fd.append("modality", p.modality);
      if (p.minProb && givesProb(p.gap)) fd.append("min_prob", p.minProb);
      data = await api("/search", { method: "POST", body: fd });
    } else {
      const usp = new URLSearchParams({ query: q.text, k: p.k });
      if (p.gap) usp.set("gap", p.gap);
      if (p.modality) usp.set("modality", p.modality);
      if (p.minProb && givesProb(p.gap)) usp.set("min_prob", p.minProb);
      if (p.hybrid) usp.set("hybrid", "true");
      data = await api("/search?" + usp.toString());
    }
    if (seq !== state.seq) return;
    showError(null);
    render(data);
    if (!q.image) compareGaps(q.text, p, data, seq);
  } catch (err) {
    if (seq !== state.seq) return;
    results.replaceChildren();
    $("summary").classList.add("hidden");
    results.dataset.state = "error";
    showError(err);
  } finally {
    if (seq === state.seq) setBusy(false);
  }
}

async function ask(text) {
  const panel = $("answer");
  panel.classList.remove("hidden");
  panel.dataset.state = "loading";
  $("answer-text").textContent = "thinking…";
  $("answer-text").classList.add("empty");
  $("answer-sources").replaceChildren();
  $("answer-notes").replaceChildren();
  const seq = (state.askSeq = (state.askSeq || 0) + 1);
  try {
    const body = { question: text, k: Math.min(50, Number($("k").value) || 10), stream: true };
    if (state.gap) body.gap = state.gap;
    const res = await api("/ask", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), raw: true });
    // server-sent events: `delta` pieces of the answer as they are generated, then `answer` (or `error`)
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = "", shown = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (seq !== state.askSeq) { reader.cancel(); return; }  // a newer question replaced this one
      buf += dec.decode(value || new Uint8Array(), { stream: !done });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        let event = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) event = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        const d = JSON.parse(data);
        if (event === "delta") {
          shown += d.text;
          $("answer-text").textContent = shown;
          $("answer-text").classList.remove("empty");
          panel.dataset.state = "streaming";
        } else if (event === "answer") {
          renderAnswer(d);
        } else if (event === "error") {
          throw new ApiError(500, d.error.code, d.error.message);
        }
      }
      if (done) break;
    }
    if (panel.dataset.state !== "done") throw new ApiError(0, "stream_ended", "the answer stream ended early");
  } catch (err) {
    if (seq !== state.askSeq) return;
    $("answer-text").textContent = `${err.code || "error"}: ${err.message}`;
    panel.dataset.state = "error";
  }
}

function renderAnswer(a) {
  const t = $("answer-text");
  t.textContent = a.answer || "(the generator gave no answer — see the notes below)";
  t.classList.toggle("empty", !a.answer);
  const g = a.generation || {};
  $("answer-meta").textContent = `${a.generator} · gap ${a.gap || "default"} · ${a.sources.length} sources in the prompt`
    + (g.seconds != null ? ` · ${Number(g.seconds).toFixed(2)} s` : "");
  const ol = $("answer-sources");
  ol.replaceChildren();
  a.sources.forEach((s, i) => {
    const li = document.createElement("li");
    const n = document.createElement("span"); n.className = "n"; n.textContent = String(s.index || i + 1);
    const badge = document.createElement("span"); badge.className = "badge " + s.modality; badge.textContent = s.modality;
    li.append(n, badge);
    if (s.modality === "image" && s.image_url) { const img = document.createElement("img"); img.alt = s.id; setImage(img, s.image_url); li.append(img); }
    const txt = document.createElement("span"); txt.className = "t";
    txt.textContent = s.modality === "text" ? (s.text || s.id) : (s.words || s.id);
    li.append(txt);
    ol.append(li);
  });
  const notes = $("answer-notes");
  notes.replaceChildren();
  for (const n of a.notes || []) { const li = document.createElement("li"); li.textContent = n; notes.append(li); }
  $("answer").dataset.state = "done";
}

// How many images each corrector puts in the top k for this query: the modality gap at a glance.
async function compareGaps(text, p, shown, seq) {
  const box = $("compare");
  box.replaceChildren();
  box.dataset.state = "loading";
  if (state.gaps.length < 2) { box.dataset.state = "done"; return; }
  const counts = {};
  counts[shown.gap] = shown.counts.image || 0;
  await Promise.all(state.gaps.filter((g) => g !== shown.gap).map(async (g) => {
    const usp = new URLSearchParams({ query: text, k: p.k, gap: g });
    if (p.modality) usp.set("modality", p.modality);
    try { counts[g] = (await api("/search?" + usp.toString())).counts.image || 0; } catch (err) { /* not usable */ }
  }));
  if (seq !== state.seq) return;
  box.append(`images in the top ${shown.k}:`);
  for (const g of state.gaps) {
    if (!(g in counts)) continue;
    const b = document.createElement("button");
    b.type = "button";
    b.className = "cmp" + (g === shown.gap ? " on" : "");
    b.dataset.gap = g;
    b.append(`${g} `, bold(String(counts[g])));
    b.addEventListener("click", () => { if (state.gap !== g) { state.gap = g; renderGapToggle(); rerun(); } });
    box.append(b);
  }
  box.dataset.state = "done";
}

// ---------------------------------------------------------------- results
function fmt(x) { return (x >= 0 ? "" : "−") + Math.abs(x).toFixed(3); }

function render(data) {
  for (const u of state.objectUrls) URL.revokeObjectURL(u);
  state.objectUrls = [];
  const grid = $("results");
  grid.replaceChildren();
  $("empty").classList.add("hidden");
  for (const h of data.hits) grid.append(card(h));
  const n = data.hits.length, ni = data.counts.image || 0, nt = data.counts.text || 0;
  $("mix-text").style.width = n ? `${(100 * nt) / n}%` : "0";
  $("mix-image").style.width = n ? `${(100 * ni) / n}%` : "0";
  const st = $("summary-text");
  st.replaceChildren();
  st.append(`${n} results · `, bold(`${ni} image${ni === 1 ? "" : "s"}`), " · ", bold(`${nt} text${nt === 1 ? "" : "s"}`),
    ` · gap `, bold(data.gap), ` · ${(data.seconds * 1000).toFixed(0)} ms`);
  if (data.gap === "naive" && data.query.modality === "text" && ni === 0 && nt > 0 && !data.modality) {
    st.append(" — naive cosine ranks every text above every image (the modality gap); try ", bold("zscore"));
  }
  $("summary").classList.remove("hidden");
  grid.dataset.gap = data.gap;
  grid.dataset.images = String(ni);
  grid.dataset.texts = String(nt);
  grid.dataset.state = "done";
}

function card(h) {
  const el = document.createElement("article");
  el.className = "card " + h.modality;
  el.dataset.modality = h.modality;
  el.dataset.id = h.id;
  const rank = document.createElement("span"); rank.className = "rank"; rank.textContent = "#" + h.rank;
  const badge = document.createElement("span"); badge.className = "badge " + h.modality; badge.textContent = h.modality;
  if (h.modality === "image") {
    const thumb = document.createElement("div"); thumb.className = "thumb";
    const img = document.createElement("img"); img.alt = h.text || h.id; img.loading = "lazy";
    if (h.image_url) setImage(img, h.image_url);
    thumb.append(img, badge);
    el.append(thumb, rank);
    if (h.text) { const c = document.createElement("div"); c.className = "caption"; c.textContent = h.text; el.append(c); }
  } else {
    const p = document.createElement("div"); p.className = "passage"; p.textContent = h.text || "";
    el.append(p);
  }
  const scores = document.createElement("div"); scores.className = "scores";
  scores.append(scoreBox("score", h.score, "corrected score (ranks the merged list)", ""),
    scoreBox("cosine", h.cosine, "raw cosine", "raw"));
  el.append(scores);
  const meta = document.createElement("div"); meta.className = "meta";
  if (h.modality === "text") meta.append(rank, badge); else meta.append(`#${h.modality_rank} among images`);
  if (h.modality === "text") meta.append(`#${h.modality_rank} among texts`);
  const id = document.createElement("span"); id.className = "id"; id.textContent = h.id; id.title = h.id;
  meta.append(id);
  el.append(meta);
  return el;
}

function scoreBox(label, value, title, cls) {
  const d = document.createElement("div"); d.className = "s " + cls; d.title = title;
  const b = document.createElement("b"); b.textContent = fmt(value);
  const l = document.createElement("span"); l.textContent = label;
  d.append(b, l);
  return d;
}

async function setImage(img, url) {
  if (!state.key) { img.src = url; return; }
  try {  // <img> cannot send the key header: fetch the bytes, show a blob URL
    const res = await api(url, { raw: true });
    const u = URL.createObjectURL(await res.blob());
    state.objectUrls.push(u);
    img.src = u;
  } catch (err) { img.alt = `(${err.code})`; }
}

// ---------------------------------------------------------------- wiring
function setBusy(b) { $("search-btn").disabled = b; }

function currentQuery() {
  if (state.image) return { image: state.image };
  const text = $("q").value.trim();
  return text ? { text } : null;
}

function go(withAnswer) {
  const q = currentQuery();
  if (!q) { $("q").focus(); return; }
  state.lastQuery = q;
  state.asked = withAnswer && !!q.text;
  if (!state.asked) $("answer").classList.add("hidden");
  search(q);
  if (state.asked) ask(q.text);
}

function rerun() {
  if (!state.lastQuery) return;
  search(state.lastQuery);
  if (state.asked && state.lastQuery.text) ask(state.lastQuery.text);
}

function chooseImage(file) {
  if (!file) return;
  state.image = file;
  $("q").value = "";
  const thumb = $("image-chip-thumb");
  if (thumb.src.startsWith("blob:")) URL.revokeObjectURL(thumb.src);
  thumb.src = URL.createObjectURL(file);
  $("image-chip-name").textContent = file.name || "image";
  $("image-chip").classList.remove("hidden");
  go(false);
}

function clearImage() {
  state.image = null;
  $("image-chip").classList.add("hidden");
  $("file").value = "";
}

function wire() {
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); go(false); });
  $("ask-btn").addEventListener("click", () => { if (state.image) clearImage(); go(true); });
  $("q").addEventListener("input", () => { if (state.image && $("q").value) clearImage(); });
  $("image-chip-clear").addEventListener("click", clearImage);
  $("k").addEventListener("change", rerun);
  $("modality").addEventListener("change", rerun);
  $("min-prob").addEventListener("change", rerun);
  $("hybrid").addEventListener("change", rerun);
  const drop = $("drop"), file = $("file");
  drop.addEventListener("click", () => file.click());
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); file.click(); } });
  file.addEventListener("change", () => chooseImage(file.files[0]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const f = e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files[0];
    if (f) chooseImage(f);
  });
  // the whole page accepts a dropped image too
  document.addEventListener("dragover", (e) => e.preventDefault());
  document.addEventListener("drop", (e) => {
    if (e.target.closest && e.target.closest("#drop")) return;
    e.preventDefault();
    const f = e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files[0];
    if (f) chooseImage(f);
  });
  $("apikey-save").addEventListener("click", () => {
    state.key = $("apikey").value.trim();
    sessionStorage.setItem("mindgap-key", state.key);
    loadStats().then(rerun);
  });
  const q = new URLSearchParams(location.search).get("q");
  if (q) $("q").value = q;
  loadStats().then(() => { if (q) go(false); });
}

document.addEventListener("DOMContentLoaded", wire);
