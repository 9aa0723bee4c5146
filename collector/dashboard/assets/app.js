// RIV dashboard: reads the collector's API (/api/v1) with the browser's
// session cookie and follows its event stream. No framework: the DOM is
// built with el(), text always as text (never HTML), so nothing a device
// reports can inject markup.
"use strict";

const main = document.getElementById("main");
const live = document.getElementById("live");

// el builds an element: el("td", {class: "x"}, "text", child...).
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids.flat()) {
    if (k === undefined || k === null || k === false) continue;
    e.append(k instanceof Node ? k : String(k));
  }
  return e;
}

class Unauthorized extends Error {}

async function api(path, as) {
  const r = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (r.status === 401) throw new Unauthorized("sign in");
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    try { msg = (await r.json()).error || msg; } catch (_) { /* not JSON */ }
    throw new Error(msg);
  }
  return as === "text" ? r.text() : r.json();
}

// ---- verdicts and trust vectors (AR4SI) ----

function verdictOf(d) {
  if (d.state === "unreachable") return "unreachable";
  if (!d.status) return "pending";
  return d.status;
}

function badge(v) {
  return el("span", { class: "badge " + v }, v);
}

const claimNames = [
  ["instance-identity", "Instance identity"], ["configuration", "Configuration"],
  ["executables", "Executables"], ["file-system", "File system"], ["hardware", "Hardware"],
  ["runtime-opaque", "Runtime opaque"], ["storage-opaque", "Storage opaque"], ["sourced-data", "Sourced data"],
];
// The AR4SI values RIV sets, in words (draft-ietf-rats-ar4si §2.3).
const claimWords = {
  common: { "-1": "verifier malfunction", "0": "no claim", "1": "unexpected evidence", "99": "cryptographic validation failed" },
  "instance-identity": { 2: "recognized and not compromised", 96: "recognized but compromised", 97: "not recognized" },
  configuration: { 2: "approved configuration", 3: "no known vulnerabilities", 32: "unsafe configuration", 96: "unsupportable configuration" },
  executables: { 2: "approved run-time", 3: "approved boot-time", 32: "unsafe run-time", 33: "unrecognized run-time", 96: "contraindicated run-time" },
  "file-system": { 2: "approved files", 32: "unrecognized files", 96: "contraindicated files" },
  hardware: { 2: "genuine", 32: "unsafe", 96: "contraindicated", 97: "unrecognized" },
  "runtime-opaque": { 2: "encrypted memory", 32: "isolated memory", 96: "visible memory" },
  "storage-opaque": { 2: "hardware-keyed encryption", 32: "software-keyed encryption", 96: "unencrypted secrets" },
  "sourced-data": { 2: "trusted sources", 32: "untrusted sources", 96: "contraindicated sources" },
};

function tierOf(v) {
  if (v >= 2 && v <= 31) return "affirming";
  if (v >= 32 && v <= 95) return "warning";
  if (v >= 96 && v <= 127) return "contraindicated";
  return "none";
}

function claimCell(claim, v) {
  v = v || 0;
  const words = claimWords.common[v] || (claimWords[claim] || {})[v] || "value " + v;
  return el("td", {}, badge(tierOf(v)), " ", words);
}

// ---- the fleet overview ----

const view = { status: "", policy: "", q: "" };
let previous = new Map(); // name -> verdict, to mark what changed live

async function overview() {
  document.title = "Fleet — RIV collector";
  const { devices } = await api("/api/v1/devices");
  devices.sort((a, b) => a.name.localeCompare(b.name));
  const byVerdict = {}, byPolicy = {};
  for (const d of devices) {
    const v = verdictOf(d);
    byVerdict[v] = (byVerdict[v] || 0) + 1;
    const p = d.policy || "(none)";
    byPolicy[p] = byPolicy[p] || {};
    byPolicy[p][v] = (byPolicy[p][v] || 0) + 1;
  }
  const order = ["affirming", "warning", "contraindicated", "unreachable", "pending", "none"];
  const cards = el("ul", { class: "cards", "aria-label": "Devices by verdict" },
    el("li", {}, el("span", { class: "n" }, devices.length), el("span", { class: "l" }, "devices")),
    order.filter(v => byVerdict[v]).map(v =>
      el("li", { "data-verdict": v }, el("span", { class: "n" }, byVerdict[v]), badge(v))));
  const policies = Object.keys(byPolicy).sort();
  const policyTable = el("div", { class: "scroll" }, el("table", {},
    el("caption", {}, "Devices by policy set and verdict"),
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Policy set"), order.map(v => el("th", { scope: "col" }, v)))),
    el("tbody", {}, policies.map(p => el("tr", {}, el("th", { scope: "row" }, p),
      order.map(v => el("td", {}, byPolicy[p][v] || 0)))))));

  const search = el("input", { type: "search", id: "q", value: view.q, placeholder: "name, serial or reason" });
  const status = el("select", { id: "status" }, el("option", { value: "" }, "any"),
    order.map(v => el("option", { value: v, selected: view.status === v }, v)));
  const policy = el("select", { id: "policy" }, el("option", { value: "" }, "any"),
    policies.map(p => el("option", { value: p, selected: view.policy === p }, p)));
  const tbody = el("tbody");
  const count = el("caption", { "aria-live": "polite" });
  const render = () => {
    const q = view.q.toLowerCase();
    const rows = devices.filter(d =>
      (!view.status || verdictOf(d) === view.status) &&
      (!view.policy || (d.policy || "(none)") === view.policy) &&
      (!q || [d.name, d.serial, ...(d.reasons || []), d.error].some(s => s && s.toLowerCase().includes(q))));
    tbody.replaceChildren(...rows.map(d => {
      const v = verdictOf(d);
      const changed = previous.has(d.name) && previous.get(d.name) !== v;
      const reason = d.state === "unreachable" ? d.error : firstOf(d.reasons);
      return el("tr", { class: changed ? "changed" : null, "data-device": d.name, "data-verdict": v },
        el("th", { scope: "row" }, el("a", { href: "#/device/" + encodeURIComponent(d.name) }, d.name)),
        el("td", { class: "hide-narrow" }, d.serial || ""),
        el("td", {}, badge(v)),
        el("td", { class: "hide-narrow" }, d.policy || ""),
        el("td", { class: "hide-narrow" }, d.appraised ? el("time", { datetime: d.appraised }, fmtTime(d.appraised)) : "—"),
        el("td", { class: "hide-narrow" }, d.reset_count ?? "—"),
        el("td", { class: "reason" }, reason || ""));
    }));
    count.textContent = `${rows.length} of ${devices.length} devices`;
  };
  search.addEventListener("input", () => { view.q = search.value; render(); });
  status.addEventListener("change", () => { view.status = status.value; render(); });
  policy.addEventListener("change", () => { view.policy = policy.value; render(); });
  render();
  previous = new Map(devices.map(d => [d.name, verdictOf(d)]));
  main.replaceChildren(
    el("h1", {}, "Fleet"),
    cards,
    el("h2", {}, "Devices"),
    el("div", { class: "tools", role: "search" },
      el("label", { for: "q" }, "Search", search),
      el("label", { for: "status" }, "Verdict", status),
      el("label", { for: "policy" }, "Policy set", policy)),
    el("div", { class: "scroll" }, el("table", { id: "devices" }, count,
      el("thead", {}, el("tr", {},
        el("th", { scope: "col" }, "Device"), el("th", { scope: "col", class: "hide-narrow" }, "Serial"),
        el("th", { scope: "col" }, "Verdict"), el("th", { scope: "col", class: "hide-narrow" }, "Policy set"),
        el("th", { scope: "col", class: "hide-narrow" }, "Last appraisal"), el("th", { scope: "col", class: "hide-narrow" }, "Reboots (resetCount)"),
        el("th", { scope: "col" }, "Why"))),
      tbody)),
    el("h2", {}, "Policy sets"),
    policyTable);
}

// firstOf is the first reason of a list, with how many more follow.
function firstOf(reasons) {
  reasons = reasons || [];
  return reasons.length > 1 ? `${reasons[0]} (+${reasons.length - 1} more)` : (reasons[0] || "");
}

function fmtTime(s) {
  const d = new Date(s);
  return isNaN(d) ? s : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

// ---- a device ----

// finding turns a reason into a structured view where RIV's wording
// allows: a boot event beside its reference value, an unknown file with
// its path and hash. Anything else stays as its text.
function finding(reason) {
  let m = reason.match(/^(\w[\w-]*): PCR (\d+) event (\d+) \((.*?)\) measured ([0-9a-f]+) where the reference has ([0-9a-f]+) \((.*)\)$/);
  if (m) {
    return el("div", { class: "finding", "data-kind": "boot-event" },
      el("p", {}, el("strong", {}, m[1]), `: boot event ${m[3]} in PCR ${m[2]}, `, el("code", {}, m[4])),
      el("dl", { class: "facts" },
        el("dt", {}, "measured"), el("dd", { class: "hash" }, m[5]),
        el("dt", {}, "reference"), el("dd", { class: "hash" }, m[6]),
        el("dt", {}, "from"), el("dd", {}, m[7])));
  }
  m = reason.match(/^(\w[\w-]*): not in any signed RIM: (\S+) \((\w+):([0-9a-f]+)\)$/);
  if (m) {
    return el("div", { class: "finding warn", "data-kind": "unknown-file" },
      el("p", {}, el("strong", {}, m[1]), ": a file in no signed RIM"),
      el("dl", { class: "facts" },
        el("dt", {}, "path"), el("dd", {}, el("code", {}, m[2])),
        el("dt", {}, m[3]), el("dd", { class: "hash" }, m[4])));
  }
  return null;
}

function b64url(s) {
  s = s.replace(/-/g, "+").replace(/_/g, "/");
  while (s.length % 4) s += "=";
  return Uint8Array.from(atob(s), c => c.charCodeAt(0));
}

// verifyEAR checks the EAR's ES256/ES384 signature with the collector's
// published keys (WebCrypto): "verified", or why not.
async function verifyEAR(jwt, jwks) {
  try {
    const [h, p, s] = jwt.trim().split(".");
    const header = JSON.parse(new TextDecoder().decode(b64url(h)));
    const curve = { ES256: ["P-256", "SHA-256"], ES384: ["P-384", "SHA-384"] }[header.alg];
    if (!curve) return "unsupported algorithm " + header.alg;
    if (!crypto.subtle) return "not checked (this page is not in a secure context)";
    for (const k of jwks.keys || []) {
      if (k.crv !== curve[0]) continue;
      const key = await crypto.subtle.importKey("jwk", { kty: k.kty, crv: k.crv, x: k.x, y: k.y }, { name: "ECDSA", namedCurve: k.crv }, false, ["verify"]);
      const ok = await crypto.subtle.verify({ name: "ECDSA", hash: curve[1] }, key, b64url(s), new TextEncoder().encode(h + "." + p));
      if (ok) return "verified";
    }
    return "signature does NOT verify with the collector's key";
  } catch (e) {
    return "not verifiable: " + e.message;
  }
}

async function devicePage(name) {
  document.title = name + " — RIV collector";
  const path = "/api/v1/devices/" + encodeURIComponent(name);
  const d = await api(path);
  const [hist, jwt, jwks] = await Promise.all([
    api(path + "/history?limit=50").catch(() => ({ history: [] })),
    api(path + "/ear", "text").catch(() => ""),
    api("/api/v1/keys").catch(() => ({ keys: [] })),
  ]);
  const v = verdictOf(d);
  let claims = null;
  if (jwt) { try { claims = JSON.parse(new TextDecoder().decode(b64url(jwt.split(".")[1]))); } catch (_) { claims = null; } }
  const status = jwt ? await verifyEAR(jwt, jwks) : "no EAR yet";

  // Trust vectors: the device's and each TPM's (line cards).
  const cols = [{ name: d.tpms && d.tpms.length ? "device" : "device (TPM)", tv: d.trust_vector || {} },
    ...(d.tpms || []).map(t => ({ name: t.name, tv: t.trust_vector || {}, status: t.status }))];
  const tvTable = el("div", { class: "scroll" }, el("table", { id: "trust-vector" },
    el("caption", {}, "AR4SI trust vector, per TPM"),
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Claim"), cols.map(c => el("th", { scope: "col" }, c.name, c.status ? [" ", badge(c.status)] : [])))),
    el("tbody", {}, claimNames.map(([k, label]) => el("tr", {}, el("th", { scope: "row" }, label), cols.map(c => claimCell(k, c.tv[k])))))));

  // Reasons, with the findings RIV can lay out.
  const reasons = d.reasons || [];
  const reasonList = reasons.length ? el("ul", { class: "reasons", id: "reasons" }, reasons.map(r => el("li", {}, finding(r) || r)))
    : el("p", { class: "muted" }, d.state === "unreachable" ? "Not reached: " + d.error : "No findings: identity, quote, logs and every measured component matched.");

  // The PCR values each TPM quoted (from the EAR's attestation-set claims).
  const pcrRows = [];
  for (const [sub, a] of Object.entries((claims && claims.submods) || {})) {
    const set = ((a || {})["ear.veraison.annotated-evidence"] || {})["riv.attestation-set"];
    for (const [bank, vals] of Object.entries((set && set.pcr) || {})) {
      for (const [i, val] of Object.entries(vals).sort((x, y) => x[0] - y[0])) pcrRows.push([sub, bank, i, val]);
    }
  }
  const pcrTable = pcrRows.length ? el("div", { class: "scroll" }, el("table", { id: "pcrs" },
    el("caption", {}, "PCR values quoted (and replayed from the logs)"),
    el("thead", {}, el("tr", {}, ["TPM", "Bank", "PCR", "Value"].map(h => el("th", { scope: "col" }, h)))),
    el("tbody", {}, pcrRows.map(([s, b, i, val]) => el("tr", {}, el("td", {}, s), el("td", {}, b), el("td", {}, i), el("td", { class: "hash" }, val))))))
    : el("p", { class: "muted" }, "No quoted PCR values in the latest result.");

  // Timeline: verdicts and reboots, newest first.
  const timeline = el("ol", { class: "timeline", id: "timeline" }, (hist.history || []).map(h =>
    el("li", {}, el("time", { datetime: h.time }, fmtTime(h.time)), badge(h.status),
      h.rebooted ? el("strong", {}, "rebooted (resetCount " + h.reset_count + ")") : null,
      h.superseded ? el("span", { class: "muted" }, "superseded: " + h.superseded) : null,
      (h.reasons || []).length ? el("span", {}, firstOf(h.reasons)) : null)));

  // Software inventory and RIM coverage.
  const inv = d.inventory || [];
  const covered = inv.filter(c => c.signed).length;
  const invView = inv.length ? [
    el("p", { id: "coverage" }, `${covered} of ${inv.length} components have a signed RIM.`),
    el("div", { class: "scroll" }, el("table", { id: "inventory" },
      el("caption", {}, "Components the device lists (name and version from their signed RIM)"),
      el("thead", {}, el("tr", {}, ["Component", "Version", "Tag-id", "RIMs listed", "Signed RIM"].map(h => el("th", { scope: "col" }, h)))),
      el("tbody", {}, inv.map(c => el("tr", { "data-signed": c.signed ? "true" : "false" },
        el("th", { scope: "row" }, c.name || "(unknown)"), el("td", {}, c.version || "—"),
        el("td", { class: "hash" }, c.tag_id), el("td", {}, c.rims),
        el("td", {}, c.signed ? badge("affirming") : badge("warning"), " ", c.signed ? "yes" : "none held"))))))]
    : [el("p", { class: "muted" }, "The device lists no software inventory (or has not been appraised since the collector started).")];

  main.replaceChildren(
    el("p", {}, el("a", { href: "#/" }, "← Fleet")),
    el("h1", {}, name, " ", badge(v)),
    el("dl", { class: "facts" },
      el("dt", {}, "Serial"), el("dd", {}, d.serial || "—"),
      el("dt", {}, "Policy set"), el("dd", {}, d.policy || "—"),
      el("dt", {}, "State"), el("dd", {}, d.state + ", " + d.polls + " polls"),
      el("dt", {}, "Last appraisal"), el("dd", {}, d.appraised ? fmtTime(d.appraised) : "—"),
      el("dt", {}, "resetCount"), el("dd", {}, d.reset_count ?? "—")),
    el("h2", {}, "Why"), reasonList,
    el("h2", {}, "Trust vector"), tvTable,
    el("h2", {}, "Quoted PCRs"), pcrTable,
    el("h2", {}, "Software inventory"), ...invView,
    el("h2", {}, "Timeline"), timeline,
    el("h2", {}, "Attestation result (EAR)"),
    el("p", { id: "ear-status" }, "Signature: ", el("strong", {}, status)),
    claims ? el("details", {}, el("summary", {}, "Decoded claims"), el("pre", {}, JSON.stringify(claims, null, 2))) : null);
}

// ---- sign-in, routing, live updates ----

function loginPage(msg) {
  document.title = "Sign in — RIV collector";
  main.replaceChildren(
    el("h1", {}, "Sign in"),
    el("form", { class: "login", method: "post", action: "/login" },
      el("label", { for: "token" }, "The collector's read-only token"),
      el("input", { id: "token", name: "token", type: "password", autocomplete: "current-password", required: true }),
      el("button", { type: "submit" }, "Sign in"),
      msg ? el("p", { class: "error" }, msg) : null));
}

let rendering = null;
async function route() {
  const m = location.hash.match(/^#\/device\/(.+)$/);
  try {
    if (m) await devicePage(decodeURIComponent(m[1]));
    else await overview();
    return true;
  } catch (e) {
    if (e instanceof Unauthorized) { loginPage(); return false; }
    main.replaceChildren(el("h1", {}, "Error"), el("p", { class: "error" }, e.message));
    return true;
  }
}

// refresh re-renders the current view, at most one at a time.
function refresh() {
  if (rendering) { rendering.again = true; return; }
  rendering = { again: false };
  route().finally(() => {
    const again = rendering.again;
    rendering = null;
    if (again) refresh();
  });
}

function follow() {
  const es = new EventSource("/api/v1/events");
  let timer = null;
  const changed = (ev) => {
    live.textContent = "live · " + ev.type + " " + (JSON.parse(ev.data).device || "") + " at " + new Date().toLocaleTimeString();
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  };
  for (const kind of ["verdict", "reboot", "superseded", "unreachable", "reachable"]) es.addEventListener(kind, changed);
  es.onopen = () => { live.textContent = "live"; };
  es.onerror = () => { live.textContent = "reconnecting…"; };
}

window.addEventListener("hashchange", () => { previous = new Map(); refresh(); });
route().then(ok => { if (ok) follow(); });
