// raftq's web console: a page per route (#/cluster, #/queues, #/queue/NAME)
// that polls raftq's API on the node that served it and acts through it.
// The token, when the cluster has tokens, is kept in sessionStorage only.

const main = document.getElementById("main");
const state = { token: sessionStorage.getItem("raftq-token") || "", roles: [], auth: false, timer: 0, history: {}, gen: 0, dirty: false, pending: false };

// A form being filled in is not redrawn under the user's hands.
main.addEventListener("input", () => { state.dirty = true; });

// api calls raftq's API; it throws {status, message} on an error answer.
async function api(method, path, body, headers = {}) {
  const h = { ...headers };
  if (state.token) h.Authorization = "Bearer " + state.token;
  if (body !== undefined && typeof body !== "string") { body = JSON.stringify(body); h["Content-Type"] = "application/json"; }
  const resp = await fetch(path, { method, headers: h, body, signal: AbortSignal.timeout(10000) });
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!resp.ok) {
    const err = new Error((data && data.error) || resp.statusText || String(resp.status));
    err.status = resp.status;
    throw err;
  }
  return { data, headers: resp.headers, status: resp.status };
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function toast(message, error = false) {
  const t = el("div", { class: error ? "error" : "" }, message);
  document.getElementById("toast").append(t);
  setTimeout(() => t.remove(), 5000);
}

function can(role) { return state.roles.includes(role); }

// confirmAction asks in a modal dialog (Escape cancels).
function confirmAction(text) {
  const d = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  return new Promise(resolve => {
    d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true });
    d.returnValue = "";
    d.showModal();
    d.querySelector('button[value="cancel"]').focus(); // Enter does not destroy by accident
  });
}

async function act(what, fn) {
  try { await fn(); state.dirty = false; toast(what); refresh(true); } catch (e) { toast(`${what} failed: ${e.message}`, true); }
}

const fmt = {
  bytes(n) { const u = ["B", "KiB", "MiB", "GiB"]; let i = 0; while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; } return `${i ? n.toFixed(1) : n} ${u[i]}`; },
  age(ms) { if (!ms) return "–"; const s = ms / 1000; return s < 60 ? `${s.toFixed(0)} s` : s < 3600 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`; },
  rate(r) { return r === undefined ? "–" : r < 10 ? r.toFixed(1) : r.toFixed(0); },
};

// --- who: tokens ---

async function whoami() {
  try {
    const { data } = await api("GET", "/mgmt/whoami");
    state.auth = data.auth; state.roles = data.roles;
  } catch (e) {
    if (e.status !== 401) throw e;
    state.auth = true; state.roles = [];
  }
  const who = document.getElementById("who");
  who.replaceChildren();
  if (!state.auth) { who.append("no tokens on this cluster"); return true; }
  if (!state.roles.length) { who.append(state.token ? "the token is not valid here" : "not logged in"); return false; }
  who.append(`token roles: ${state.roles.join(", ")}`,
    el("button", { onclick: () => { sessionStorage.removeItem("raftq-token"); state.token = ""; route(); } }, "Log out"));
  return true;
}

function login() {
  const input = el("input", { type: "password", id: "token", autocomplete: "off", required: true, "aria-label": "token" });
  main.replaceChildren(el("section", { class: "card" },
    el("h1", {}, "This cluster needs a token"),
    el("p", { class: "muted" }, "The token is kept for this browser session only."),
    el("form", { class: "inline", onsubmit: e => { e.preventDefault(); state.token = input.value.trim(); sessionStorage.setItem("raftq-token", state.token); route(); } },
      el("label", {}, "Token", input), el("button", { class: "primary", type: "submit" }, "Log in"))));
  input.focus();
}

// --- the cluster page ---

async function clusterPage() {
  const { data } = await api("GET", "/mgmt/cluster");
  const leaderCommit = Math.max(0, ...data.members.filter(m => m.status).map(m => m.status.commit));
  const rows = data.members.map(m => {
    const s = m.status;
    const role = m.id === data.leader ? "leader" : m.learner ? "learner" : "follower";
    const actions = [];
    if (can("admin")) {
      if (m.learner) actions.push(el("button", { "data-key": `promote-${m.id}`, onclick: () => act(`node ${m.id} promoted`, () => api("POST", `/mgmt/nodes/${m.id}/promote`)) }, "Promote"));
      if (!m.learner && role !== "leader") actions.push(el("button", { "data-key": `lead-${m.id}`, onclick: () => act(`leadership handed to ${m.id}`, () => api("POST", "/mgmt/leader", { id: m.id })) }, "Make leader"));
      actions.push(el("button", { class: "danger", "data-key": `remove-${m.id}`, onclick: async () => { if (await confirmAction(`Remove node ${m.id} from the cluster? Its id is never used again.`)) act(`node ${m.id} removed`, () => api("DELETE", `/mgmt/nodes/${m.id}`)); } }, "Remove"));
    }
    return el("tr", { "data-member": m.id },
      el("td", { class: "num" }, m.id), el("td", { "data-role": role }, role),
      el("td", { class: "num" }, s ? s.term : "–"), el("td", { class: "num" }, s ? s.commit : "–"), el("td", { class: "num" }, s ? s.applied : "–"),
      el("td", { class: "num" }, s ? leaderCommit - s.applied : "–"),
      el("td", { class: m.ready ? "good" : "bad", "data-ready": m.ready ? "yes" : "no" }, m.ready ? "ready" : "not ready"),
      el("td", {}, /^https?:\/\//.test(m.api_url || "") ? el("a", { href: m.api_url + "/ui/" }, m.api_url) : (m.api_url || "–")),
      el("td", { class: "muted" }, m.error || (s ? `up ${fmt.age(s.uptime_seconds * 1000)}, ${s.version}` : "")),
      el("td", {}, el("div", { class: "row-actions" }, ...actions)));
  });
  const view = [el("h1", {}, `Cluster: ${data.members.length} members, leader ${data.leader || "none"}`),
    el("table", { id: "members" },
      el("thead", {}, el("tr", {}, ["ID", "Role", "Term", "Commit", "Applied", "Lag", "Health", "API", "", ""].map(h => el("th", {}, h)))),
      el("tbody", {}, rows))];
  if (can("admin")) {
    const id = el("input", { type: "number", min: 1, required: true, "aria-label": "new member id" });
    const peer = el("input", { type: "text", placeholder: "http://host:port", required: true, "aria-label": "new member peer URL" });
    const learner = el("input", { type: "checkbox", checked: true, "aria-label": "as a learner" });
    view.push(el("h2", {}, "Add a member"), el("form", { class: "inline", onsubmit: e => { e.preventDefault(); act(`node ${id.value} added; start it with --join`, () => api("POST", "/mgmt/nodes", { id: Number(id.value), peer_url: peer.value, learner: learner.checked })); } },
      el("label", {}, "ID", id), el("label", {}, "Peer URL", peer), el("label", {}, "Learner", learner), el("button", { type: "submit" }, "Add")));
  }
  return view;
}

// --- the queues page ---

// sample notes a queue's depth and rates since the last poll, keeping
// the last five minutes.
function sample(name, st, now) {
  const h = state.history[name] || (state.history[name] = []);
  const t = st.totals;
  const out = t.popped + t.acked + t.dead_lettered + t.purged + t.expired;
  const prev = h[h.length - 1];
  const point = { at: now, depth: st.depth + st.leased + st.delayed, enq: t.enqueued, out };
  if (prev && now > prev.at) {
    point.in = Math.max(0, (t.enqueued - prev.enq) / ((now - prev.at) / 1000));
    point.rout = Math.max(0, (out - prev.out) / ((now - prev.at) / 1000));
  }
  h.push(point);
  while (h.length && h[0].at < now - 5 * 60 * 1000) h.shift();
  return point;
}

function chart(points) {
  const w = 600, hgt = 120, pad = 4;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${hgt}`); svg.setAttribute("class", "chart"); svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img"); svg.setAttribute("aria-label", "depth and rates over the last minutes");
  if (points.length < 2) return svg;
  const t0 = points[0].at, t1 = points[points.length - 1].at || t0 + 1;
  const line = (key, cls) => {
    const max = Math.max(1, ...points.map(p => p[key] || 0));
    const d = points.map((p, i) => `${i ? "L" : "M"}${(pad + (w - 2 * pad) * (p.at - t0) / Math.max(1, t1 - t0)).toFixed(1)},${(hgt - pad - (hgt - 2 * pad) * (p[key] || 0) / max).toFixed(1)}`).join("");
    const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
    path.setAttribute("d", d); path.setAttribute("class", cls);
    svg.append(path);
  };
  line("depth", "depth"); line("in", "in"); line("rout", "out");
  return svg;
}

function legend() {
  return el("div", { class: "legend" }, el("span", { class: "depth" }, "— messages held"), el("span", { class: "in" }, "— in / s"), el("span", { class: "out" }, "- - out / s"), el("span", {}, "(last 5 minutes, each line to its own scale)"));
}

const columns = [
  ["queue", "Queue", q => q.queue], ["depth", "Ready", q => q.depth], ["leased", "Leased", q => q.leased], ["delayed", "Delayed", q => q.delayed],
  ["bytes", "Bytes", q => q.bytes], ["age", "Oldest", q => q.oldest_ready_age_ms], ["in", "In/s", q => q._in || 0], ["out", "Out/s", q => q._out || 0],
];
state.sort = { key: "queue", desc: false };

async function queuesPage() {
  const { data } = await api("GET", "/queues?stats=true&limit=1000");
  const now = Date.now();
  const total = { at: now, depth: 0, in: 0, rout: 0 };
  for (const q of data.queues) {
    const p = sample(q.queue, q, now);
    q._in = p.in; q._out = p.rout;
    total.depth += p.depth; total.in += p.in || 0; total.rout += p.rout || 0;
  }
  const all = state.history["*"] || (state.history["*"] = []);
  all.push(total);
  while (all.length && all[0].at < now - 5 * 60 * 1000) all.shift();
  const col = columns.find(c => c[0] === state.sort.key);
  const qs = [...data.queues].sort((a, b) => { const x = col[2](a), y = col[2](b); return (x < y ? -1 : x > y ? 1 : 0) * (state.sort.desc ? -1 : 1); });
  const head = columns.map(([key, label]) => el("th", { class: key === "queue" ? "" : "num", "aria-sort": state.sort.key === key ? (state.sort.desc ? "descending" : "ascending") : "none" },
    el("button", { "data-key": `sort-${key}`, onclick: () => { state.sort = { key, desc: state.sort.key === key ? !state.sort.desc : false }; refresh(true); } }, label + (state.sort.key === key ? (state.sort.desc ? " ▼" : " ▲") : ""))));
  head.push(el("th", {}, "Limits"), el("th", {}, "Dead letters to"));
  const rows = qs.map(q => el("tr", { "data-queue": q.queue },
    el("td", {}, el("a", { href: `#/queue/${encodeURIComponent(q.queue)}` }, q.queue)),
    el("td", { class: "num", "data-depth": q.depth }, q.depth), el("td", { class: "num" }, q.leased), el("td", { class: "num" }, q.delayed),
    el("td", { class: "num" }, fmt.bytes(q.bytes)), el("td", { class: "num" }, fmt.age(q.oldest_ready_age_ms)),
    el("td", { class: "num" }, fmt.rate(q._in)), el("td", { class: "num" }, fmt.rate(q._out)),
    el("td", { class: "muted" }, limits(q.config)), el("td", {}, q.config.dead_letter_queue ? `${q.config.dead_letter_queue} after ${q.config.max_deliveries}` : "–")));
  const more = data.next ? el("p", { class: "muted" }, `The first ${data.queues.length} queues by name; raftqctl queues lists them all.`) : null;
  return [el("h1", {}, `Queues (${data.queues.length}${data.next ? "+" : ""})`), chart(all), legend(), more,
    el("table", { id: "queues" }, el("thead", {}, el("tr", {}, head)), el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 10, class: "muted" }, "No queues yet."))))];
}

function limits(c) {
  const parts = [];
  if (c.max_messages) parts.push(`${c.max_messages} msgs`);
  if (c.max_bytes) parts.push(fmt.bytes(c.max_bytes));
  return parts.join(", ") || "none";
}

// --- a queue's page ---

const leased = {}; // queue → leases taken by hand on this page

// bodyText is a body as text (when the API sent it as text) or as the
// hex of its bytes (its UTF-8 encoding, or the base64 the API sent).
function bodyText(m, hex) {
  if (!hex && m.body !== undefined) return m.body;
  const bytes = m.body !== undefined ? new TextEncoder().encode(m.body) : Uint8Array.from(atob(m.body_b64 || ""), c => c.charCodeAt(0));
  return [...bytes].map(b => b.toString(16).padStart(2, "0")).join(" ");
}

async function queuePage(name) {
  const q = encodeURIComponent(name);
  const [{ data: st }, peek] = await Promise.all([api("GET", `/queues/${q}/stats`),
    can("consumer") ? api("GET", `/queues/${q}/messages?max=20`) : Promise.resolve({ data: { messages: [] } })]);
  sample(name, st, Date.now());
  const view = [el("h1", {}, `Queue ${name}`),
    el("div", { class: "grid" }, [["ready", st.depth], ["leased", st.leased], ["delayed", st.delayed], ["bytes", fmt.bytes(st.bytes)],
      ["oldest", fmt.age(st.oldest_ready_age_ms)], ["enqueued", st.totals.enqueued], ["acked", st.totals.acked], ["dead-lettered", st.totals.dead_lettered]]
      .map(([k, v]) => el("div", { class: "stat", "data-stat": k }, el("b", {}, v), k))),
    chart(state.history[name] || []), legend()];
  const actions = el("div", { class: "actions" });
  if (can("consumer")) actions.append(el("button", { id: "lease", onclick: () => act("leased", async () => {
    const r = await api("POST", `/queues/${q}/leases?max=1&ttl=5m`);
    if (r.status === 204) throw new Error("no message is ready");
    (leased[name] ||= []).push(...r.data.leases);
  }) }, "Lease one (5 min)"));
  if (can("admin")) {
    actions.append(el("button", { id: "purge", class: "danger", onclick: async () => { if (await confirmAction(`Purge ${name}? Its ready and delayed messages are dropped; leased ones stay.`)) act(`${name} purged`, () => api("POST", `/queues/${q}/purge`)); } }, "Purge"),
      el("button", { id: "delete", class: "danger", onclick: async () => { if (await confirmAction(`Delete queue ${name} with all its messages and config?`)) act(`${name} deleted`, async () => { await api("DELETE", `/queues/${q}`); location.hash = "#/queues"; }); } }, "Delete queue"));
  }
  view.push(actions);
  const mine = leased[name] || [];
  if (mine.length) {
    view.push(el("h2", {}, "Leased here"), el("table", {}, el("tbody", {}, mine.map((l, i) => el("tr", {},
      el("td", { class: "num" }, l.id), el("td", { class: "body" }, l.body ?? "(binary)"), el("td", {}, `expires ${new Date(l.lease_expires).toLocaleTimeString()}`),
      el("td", {}, el("button", { "data-key": `ack-${l.id}`, onclick: () => act(`message ${l.id} acked`, async () => { await api("DELETE", `/queues/${q}/messages/${l.id}?lease=${encodeURIComponent(l.lease_token)}`); mine.splice(mine.indexOf(l), 1); }) }, "Ack"),
        el("button", { "data-key": `release-${l.id}`, onclick: () => act(`message ${l.id} released`, async () => { await api("POST", `/queues/${q}/messages/${l.id}/release?lease=${encodeURIComponent(l.lease_token)}`); mine.splice(mine.indexOf(l), 1); }) }, "Release")))))));
  }
  if (can("consumer")) {
    const hex = state.hex || false;
    view.push(el("h2", {}, "Ready messages ", el("button", { id: "hex", onclick: () => { state.hex = !hex; refresh(true); } }, hex ? "show text" : "show hex")),
      el("table", { id: "peek" }, el("thead", {}, el("tr", {}, ["ID", "Age", "Deliveries", "Content type", "Body", "Origin"].map(h => el("th", {}, h)))),
        el("tbody", {}, peek.data.messages.length ? peek.data.messages.map(m => el("tr", { "data-message": m.id },
          el("td", { class: "num" }, m.id), el("td", {}, fmt.age(Date.now() - Date.parse(m.enqueued_at))), el("td", { class: "num" }, m.deliveries),
          el("td", {}, m.content_type), el("td", { class: "body" }, bodyText(m, hex)),
          el("td", {}, m.origin ? `${m.origin.queue} #${m.origin.id}, ${m.origin.deliveries} deliveries` : "–"))) : el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No ready message.")))));
  }
  if (can("producer")) {
    const body = el("textarea", { id: "send-body", "aria-label": "message body" });
    const ct = el("input", { type: "text", value: "text/plain", "aria-label": "content type" });
    view.push(el("h2", {}, "Send a message"), el("form", { onsubmit: e => { e.preventDefault(); act("sent", async () => { await api("POST", `/queues/${q}`, body.value, { "Content-Type": ct.value }); body.value = ""; }); } },
      body, el("div", { class: "actions" }, el("label", {}, "Content type ", ct), el("button", { class: "primary", type: "submit", id: "send" }, "Send"))));
  }
  if (can("admin")) {
    const c = st.config;
    const fields = [["max_deliveries", "Max deliveries"], ["dead_letter_queue", "Dead-letter queue"], ["max_messages", "Max messages"], ["max_bytes", "Max bytes"],
      ["visibility_timeout_ms", "Visibility (ms)"], ["delay_ms", "Delay (ms)"], ["receive_wait_ms", "Receive wait (ms)"], ["max_message_size", "Max message size"], ["retention_ms", "Retention (ms)"]];
    const inputs = fields.map(([k, label]) => [k, el("input", { type: k === "dead_letter_queue" ? "text" : "number", min: 0, value: c[k], "aria-label": label }), label]);
    view.push(el("h2", {}, "Config and limits"), el("form", { class: "inline", onsubmit: e => {
      e.preventDefault();
      const ch = {};
      for (const [k, input] of inputs) if (String(c[k]) !== input.value) ch[k] = k === "dead_letter_queue" ? input.value : Number(input.value);
      if (!Object.keys(ch).length) { toast("nothing changed"); return; }
      act("config saved", () => api("PUT", `/queues/${q}/config`, ch));
    } }, inputs.map(([, input, label]) => el("label", {}, label, input)), el("button", { type: "submit" }, "Save")));
  }
  return view;
}

// --- routing and polling ---

async function render() {
  const hash = location.hash || "#/cluster";
  for (const a of document.querySelectorAll("[data-nav]")) a.toggleAttribute("aria-current", hash.startsWith("#/" + a.dataset.nav)) && a.setAttribute("aria-current", "page");
  if (hash.startsWith("#/queue/")) return queuePage(decodeURIComponent(hash.slice(8)));
  if (hash === "#/queues") return queuesPage();
  return clusterPage();
}

// refresh draws the current route again. A poll (not forced) leaves the
// page alone while a dialog is open or a form is being filled in; a
// forced refresh asked during a render runs after it; a render that a
// later one overtook (the route changed meanwhile) is thrown away. The
// focused control keeps the focus across the redraw.
let rendering = false;
async function refresh(force = false) {
  if (document.querySelector("dialog[open]")) return;
  if (rendering) { state.pending = state.pending || force; return; }
  const active = document.activeElement;
  const typing = active && main.contains(active) && (active.tagName === "INPUT" || active.tagName === "TEXTAREA");
  if (!force && (typing || state.dirty)) return;
  const gen = ++state.gen;
  const focusKey = active && main.contains(active) ? active.id || active.dataset.key : "";
  rendering = true;
  try {
    const view = await render();
    if (gen !== state.gen) return;
    main.replaceChildren(...view.filter(v => v));
    main.dataset.updated = Date.now();
    if (focusKey) {
      const again = document.getElementById(focusKey) || main.querySelector(`[data-key="${CSS.escape(focusKey)}"]`);
      if (again) again.focus();
    }
  } catch (e) {
    if (gen !== state.gen) return;
    if (e.status === 401) { state.roles = []; login(); }
    else main.replaceChildren(el("section", { class: "card" }, el("h1", {}, "Cannot read the cluster"), el("p", { class: "bad" }, e.message),
      el("p", { class: "muted" }, "Retrying every second.")));
  } finally {
    rendering = false;
    if (state.pending) { state.pending = false; refresh(true); }
  }
}

async function route() {
  clearInterval(state.timer);
  state.gen++; // a render of the route left behind is thrown away
  state.dirty = false;
  try {
    if (!(await whoami())) { login(); return; }
  } catch (e) {
    main.replaceChildren(el("p", { class: "bad" }, `Cannot reach this node: ${e.message}`));
  }
  await refresh(true);
  state.timer = setInterval(refresh, 1000);
}

window.addEventListener("hashchange", route);
route();
