/**
 * himalia's labeling widget: one item at a time, a key per class, labels saved as you go.
 *
 * The same code runs as an anywidget view in notebooks (`render`) and on the platform's
 * standalone labeling page (`mount`). Every label, skip and undo is an entry of an outbox kept
 * in localStorage until the platform acknowledges it, so no label is lost when the page, the
 * kernel or the network goes away; the next item comes from a prefetched queue, so the screen
 * never waits on the network.
 *
 * One labeling session (queue, outbox, counts) per label set and person in a page, shared by
 * every view of it: a widget displayed twice shows the same item in both places.
 */

// The queue holds at least 10 items, and more when the person labels faster than the next batch
// arrives: enough for every key press to find an item on screen, few enough (each is leased to
// the person for 10 minutes) to leave the rest of the set to the others.
const BATCH = 10; // new items asked for at a time, at least
const LOW_WATER = 10; // ask for more when fewer are queued (at a calm pace)
const MAX_NEXT = 50; // the API's largest n
const MAX_BACKOFF_MS = 5000;
// A kernel that does not answer (busy with a long cell, or gone) counts as unreachable.
const CALL_TIMEOUT_MS = 30000;
// With nothing left, ask again now and then: items get added, others' leases lapse.
const RECHECK_MS = 20000;
const RESERVED_KEYS = "usc"; // undo, skip, comment
const STORE = "himalia-labels";
const OUTBOX_FIELDS = ["op", "client_id", "item_id", "label", "comment", "seconds", "at", "seq"];

/** The keys of `count` classes: 1..9, 0, then the letters not kept for undo, skip, comment. */
export function shortcutKeys(count) {
  const letters = [..."abcdefghijklmnopqrstuvwxyz"].filter((c) => !RESERVED_KEYS.includes(c));
  return [..."1234567890", ...letters].slice(0, count);
}

function newId() {
  if (globalThis.crypto?.randomUUID) {
    return crypto.randomUUID();
  }
  // randomUUID needs a secure context (https, localhost); getRandomValues does not.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function cookie(name) {
  const found = document.cookie.split("; ").find((c) => c.startsWith(`${name}=`));
  return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
}

/** JupyterLab's (and Notebook 7's) page config, or null outside them. */
function jupyterPageConfig() {
  const node = document.getElementById("jupyter-config-data");
  try {
    return node ? JSON.parse(node.textContent) : null;
  } catch {
    return null;
  }
}

/** Runs `fn` on a kernel's model; whether it went. A kernel that died or restarted closed the
 * widget's comm, and sending on it throws: that must never stop the labeling. */
function toKernel(fn) {
  try {
    fn();
    return true;
  } catch {
    return false;
  }
}

/** A moving average that follows changes of pace within a few samples. */
const average = (mean, sample) => (mean ? 0.7 * mean + 0.3 * sample : sample);
const retryable = (status) => status === 0 || status >= 500;
const backoff = (attempt) => Math.min(MAX_BACKOFF_MS, 250 * 2 ** attempt);
const messageOf = (reply) => reply.body?.message || `HTTP ${reply.status}`;

// -- transports: call(method, path below /api/v1/labelsets/, body) -> {status, body} ----------

/** Calls `${base}<path>` with the page's cookie session (and its XSRF token). */
function httpTransport(base, xsrf, token = "") {
  return {
    inline: false,
    async call(method, path, body) {
      const headers = { "X-XSRFToken": xsrf() };
      if (token) {
        headers.Authorization = `token ${token}`;
      }
      if (body != null) {
        headers["Content-Type"] = "application/json";
      }
      let response;
      let text;
      try {
        response = await fetch(base + path, {
          method,
          headers,
          credentials: "same-origin",
          body: body == null ? undefined : JSON.stringify(body),
        });
        text = await response.text();
      } catch (e) {
        return { status: 0, body: { message: `Cannot reach the platform: ${e.message}` } };
      }
      const isJson = (response.headers.get("content-type") || "").includes("json");
      try {
        return { status: response.status, body: text && isJson ? JSON.parse(text) : null };
      } catch {
        return { status: 0, body: { message: `The platform answered ${response.status} with bad JSON` } };
      }
    },
    imageUrl: (item) => item.image || base + item.image_path,
  };
}

/** Asks the kernel to make the call (the widget's comm); images come inline as data URLs. */
function kernelTransport(session) {
  const waiting = new Map();
  let lastId = 0;
  return {
    inline: true,
    call(method, path, body) {
      const id = ++lastId;
      const msg = { type: "call", id, method, path, body: body ?? null };
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          waiting.delete(id);
          resolve({ status: 0, body: { message: "The kernel did not answer (busy, or stopped)" } });
        }, CALL_TIMEOUT_MS);
        waiting.set(id, (reply) => {
          clearTimeout(timer);
          resolve(reply);
        });
        if (!session.kernelModels().some((model) => toKernel(() => model.send(msg)))) {
          waiting.delete(id);
          clearTimeout(timer);
          resolve({ status: 0, body: { message: "No kernel to reach the platform through" } });
        }
      });
    },
    receive(msg) {
      const done = msg?.type === "reply" && waiting.get(msg.id);
      if (done) {
        waiting.delete(msg.id);
        done({ status: msg.status, body: msg.body });
      }
    },
    imageUrl: (item) => item.image || "",
  };
}

/** Inside Jupyter: the server extension's route if the server has it, else the kernel. */
async function pickTransport(session) {
  const page = jupyterPageConfig();
  if (page?.baseUrl) {
    const http = httpTransport(`${page.baseUrl}himalia/labels/api/`, () => cookie("_xsrf"), page.token);
    const reply = await http.call("GET", `${session.labelset.id}`);
    if (reply.status >= 200 && reply.status < 300) {
      session.setLabelset(reply.body, true);
      return http;
    }
    // The route answers as the platform does ({status, message}); a server without it, its own 404.
    if (reply.status !== 0 && typeof reply.body?.status === "number") {
      return http;
    }
  }
  return kernelTransport(session);
}

// -- the labeling session ---------------------------------------------------------------------

const sessions = new Map();
let lastSeq = 0;

class Session {
  constructor(key, labelset) {
    this.key = key;
    this.labelset = labelset;
    this.views = new Set();
    this.lastModel = null; // a kernel's model, kept to report to after the last view closed
    this.transport = null;
    this.connected = null;
    this.seen = new Set(); // ids of items queued, shown or sent: a fetch may return them again
    this.queue = [];
    this.images = new Map(); // preloaded images, by item id
    this.current = null;
    this.shownAt = 0;
    this.undoneLabel = undefined; // the label of the item brought back by undo
    this.selected = new Set();
    this.comment = "";
    this.history = []; // {item, op} of the labels given here, for undo
    this.inFlight = null;
    this.sending = false;
    this.attempts = 0;
    this.loadAttempts = 0;
    this.fetching = false;
    this.exhausted = false;
    this.extra = 0; // items the server holds for us that we do not know of
    this.pace = 0; // ms between two labels (a moving average; 0: not known yet)
    this.lastLabelAt = 0;
    this.latency = 0; // ms a batch of items takes to arrive (a moving average)
    this.saved = 0;
    this.delta = 0; // labels not yet counted in labelset.progress.mine
    this.skipped = 0; // skips not yet counted in labelset.progress.remaining_for_me
    this.sendError = "";
    this.loadError = "";
    this.refused = "";
    this.timers = new Map();
    this.wake = null;
    this.outbox = this.restore();
  }

  get multi() {
    return this.labelset.task === "multi";
  }

  // -- the outbox, one localStorage entry per operation ------------------------------------
  storageKey(op) {
    return `${STORE}:${this.key}:${op.client_id}`;
  }

  restore() {
    const prefix = `${STORE}:${this.key}:`;
    const ops = [];
    let keys = [];
    try {
      keys = Object.keys(localStorage).filter((key) => key.startsWith(prefix));
    } catch {
      // No storage (a sandboxed frame): the outbox lives in memory only.
    }
    for (const key of keys) {
      try {
        ops.push({ ...JSON.parse(localStorage.getItem(key)), state: "pending", restored: true });
      } catch {
        localStorage.removeItem(key); // not an entry this code wrote
      }
    }
    ops.sort((a, b) => a.at - b.at || a.seq - b.seq);
    ops.forEach((op) => this.seen.add(op.item_id));
    return ops;
  }

  enqueue(fields) {
    const op = { ...fields, client_id: newId(), at: Date.now(), seq: ++lastSeq, state: "pending" };
    this.outbox.push(op);
    try {
      localStorage.setItem(this.storageKey(op), JSON.stringify(op, OUTBOX_FIELDS));
    } catch {
      // Full or unavailable: the entry is still sent from memory.
    }
    return op;
  }

  remove(op) {
    this.outbox.splice(this.outbox.indexOf(op), 1);
    try {
      localStorage.removeItem(this.storageKey(op));
    } catch {
      // See enqueue.
    }
  }

  // -- views and the kernels behind them ---------------------------------------------------
  attach(view, transport) {
    this.views.add(view);
    this.connected ??= this.connect(transport);
    view.update();
  }

  detach(view) {
    this.views.delete(view);
    if (!view.model.local) {
      this.lastModel = view.model;
    }
    this.disposeIfIdle();
  }

  kernelModels() {
    const models = [...this.views].map((v) => v.model).filter((m) => !m.local);
    return models.length || !this.lastModel ? models : [this.lastModel];
  }

  tellKernels(msg) {
    this.kernelModels().forEach((model) => toKernel(() => model.send(msg)));
  }

  emit() {
    for (const view of this.views) {
      view.update();
    }
    const state = { counted: this.saved, pending: this.outbox.length, error: this.errorText() };
    for (const model of this.kernelModels()) {
      const changed = Object.keys(state).filter((k) => model.get(k) !== state[k]);
      if (changed.length) {
        toKernel(() => {
          changed.forEach((k) => model.set(k, state[k]));
          model.save_changes();
        });
      }
    }
  }

  errorText() {
    return this.sendError || this.loadError || this.refused;
  }

  async connect(transport) {
    this.transport = transport || (await pickTransport(this));
    this.emit();
    this.pump(); // an outbox left by an earlier page goes first
    this.refill();
  }

  setLabelset(labelset, fromServer) {
    this.labelset = labelset;
    this.delta = 0;
    this.skipped = 0;
    if (fromServer) {
      for (const model of this.kernelModels()) {
        toKernel(() => {
          model.set("labelset", labelset);
          model.save_changes();
        });
      }
    }
    this.emit();
  }

  progress() {
    const { mine = 0, remaining_for_me: remaining = 0 } = this.labelset.progress || {};
    const done = Math.max(0, mine + this.delta);
    return { done, total: Math.max(done, mine + remaining - this.skipped) };
  }

  later(name, ms, fn) {
    clearTimeout(this.timers.get(name));
    this.timers.set(name, setTimeout(fn, ms));
  }

  disposeIfIdle() {
    if (!this.views.size && !this.outbox.length) {
      this.timers.forEach((t) => clearTimeout(t));
      sessions.delete(this.key);
    }
  }

  // -- the queue ---------------------------------------------------------------------------
  /** How many items to keep queued: what the person labels in two round trips, at least. */
  depth() {
    const needed = this.pace ? Math.ceil((2 * this.latency) / this.pace) : 0;
    return Math.min(MAX_NEXT, Math.max(LOW_WATER, needed));
  }

  async refill() {
    const depth = this.depth();
    if (this.fetching || !this.transport || this.exhausted || this.queue.length >= depth) {
      return;
    }
    this.fetching = true;
    // The server first returns what it holds for us (shown, queued, not yet acknowledged).
    const held = this.queue.length + (this.current ? 1 : 0) +
      this.outbox.filter((op) => op.op !== "undo").length;
    const n = Math.min(MAX_NEXT, held + this.extra + Math.max(BATCH, depth - this.queue.length));
    const inline = this.transport.inline ? "&inline=1" : "";
    const started = performance.now();
    const reply = await this.transport.call("GET", `${this.labelset.id}/next?n=${n}${inline}`);
    this.latency = average(this.latency, performance.now() - started);
    this.fetching = false;
    let again = false;
    if (reply.status === 200 || reply.status === 204) {
      const items = reply.status === 200 ? reply.body.items || [reply.body.item] : [];
      const fresh = items.filter((item) => item && !this.seen.has(item.id));
      fresh.forEach((item) => this.enqueueItem(item));
      // A short answer: the server has nothing more for us. A full one of known items only: it
      // holds more for us than we count; ask for more at once (up to the API's largest n; past
      // it, at the next label, once acknowledgements have made room).
      const full = items.length >= n;
      this.exhausted = fresh.length === 0 && !full;
      this.extra = fresh.length === 0 && full ? this.extra + BATCH : 0;
      again = !this.exhausted && (fresh.length > 0 || n < MAX_NEXT);
      this.loadError = "";
      this.loadAttempts = 0;
    } else {
      this.loadError = `Cannot load items: ${messageOf(reply)}`;
      if (retryable(reply.status)) {
        this.later("refill", backoff(++this.loadAttempts), () => this.refill());
      }
    }
    if (this.exhausted) {
      this.later("recheck", RECHECK_MS, () => this.recheck());
      this.reloadLabelset();
    }
    if (!this.current && this.queue.length) {
      this.advance();
    } else {
      this.emit();
    }
    if (again) {
      this.refill();
    }
  }

  enqueueItem(item) {
    this.seen.add(item.id);
    this.queue.push(item);
    const url = item.kind === "image" && this.transport.imageUrl(item);
    if (url) {
      const image = new Image();
      image.decoding = "async";
      image.src = url;
      this.images.set(item.id, image);
    }
  }

  recheck() {
    if (this.views.size) {
      this.exhausted = false;
      this.refill();
    }
  }

  /** The set's progress from the platform, when no label of ours is still on its way. */
  async reloadLabelset() {
    const given = this.history.length;
    if (this.outbox.length) {
      return;
    }
    const reply = await this.transport.call("GET", `${this.labelset.id}`);
    if (reply.status === 200 && !this.outbox.length && this.history.length === given) {
      this.setLabelset(reply.body, true);
    }
  }

  show(item, undoneLabel) {
    if (this.current && this.current !== item) {
      this.images.delete(this.current.id);
    }
    this.current = item || null;
    this.shownAt = performance.now();
    this.comment = "";
    this.undoneLabel = undoneLabel;
    this.selected = new Set(this.multi && Array.isArray(undoneLabel) ? undoneLabel : []);
    this.emit();
  }

  advance() {
    this.show(this.queue.shift());
    this.refill();
  }

  // -- what the person does ----------------------------------------------------------------
  label(value) {
    const item = this.current;
    if (!item) {
      return;
    }
    const now = performance.now();
    const seconds = Math.round(now - this.shownAt) / 1000;
    if (this.lastLabelAt) {
      this.pace = average(this.pace, now - this.lastLabelAt);
    }
    this.lastLabelAt = now;
    const op = this.enqueue({ op: "label", item_id: item.id, label: value, comment: this.comment.trim(), seconds });
    this.history.push({ item, op });
    this.delta += 1;
    this.advance(); // the next item is on screen before anything goes out
    this.pump();
  }

  toggle(name) {
    if (this.selected.has(name)) {
      this.selected.delete(name);
    } else {
      this.selected.add(name);
    }
    this.emit();
  }

  submit() {
    if (this.current) {
      this.label(this.labelset.classes.filter((c) => this.selected.has(c)));
    }
  }

  skip() {
    if (this.current) {
      this.enqueue({ op: "skip", item_id: this.current.id });
      this.skipped += 1;
      this.advance();
      this.pump();
    }
  }

  /** Take back the last label given here and show its item again. */
  undo() {
    const last = this.history.pop();
    if (!last) {
      return;
    }
    const { item, op } = last;
    if (op.state === "pending" && op !== this.inFlight) {
      this.remove(op); // never sent: forgetting it is the whole undo
    } else if (op.state !== "dropped") {
      this.enqueue({ op: "undo", item_id: item.id }); // sent after the label, in order
    }
    if (op.state !== "dropped") {
      this.delta -= 1;
    }
    if (this.current) {
      this.queue.unshift(this.current);
    }
    this.show(item, op.label);
    this.pump();
  }

  retryNow() {
    this.attempts = 0;
    this.wake?.();
    if (this.loadError) {
      this.loadAttempts = 0;
      this.refill();
    }
  }

  checkAgain() {
    this.exhausted = false;
    this.refill();
  }

  dismiss() {
    this.refused = "";
    this.emit();
  }

  // -- sending the outbox, in order, until each entry is acknowledged ----------------------
  request(op) {
    const set = this.labelset.id;
    if (op.op === "skip") {
      return ["POST", `${set}/skip`, { item_id: op.item_id }];
    }
    if (op.op === "undo") {
      return ["DELETE", `${set}/annotations/${encodeURIComponent(op.item_id)}`, null];
    }
    const { item_id, label, comment, seconds, client_id } = op;
    return ["POST", `${set}/annotations`, { item_id, label, comment, seconds, client_id }];
  }

  async pump() {
    if (this.sending || !this.transport) {
      return;
    }
    this.sending = true;
    try {
      while (this.outbox.length) {
        await this.send(this.outbox[0]);
      }
    } finally {
      this.sending = false;
      this.inFlight = null;
    }
    this.emit();
    this.disposeIfIdle();
  }

  /** One attempt at the outbox's first entry; after a failure worth retrying, the backoff. */
  async send(op) {
    this.inFlight = op;
    const reply = await this.transport.call(...this.request(op));
    this.inFlight = null;
    // An undo finds nothing to take back (404) when it was already carried out.
    if (reply.status === 200 || reply.status === 201 || (op.op === "undo" && reply.status === 404)) {
      this.acknowledge(op, reply.status);
    } else if (retryable(reply.status)) {
      this.sendError = `Not saved yet: ${messageOf(reply)}`;
      this.emit();
      await new Promise((resolve) => {
        this.wake = resolve;
        this.later("send", backoff(++this.attempts), resolve);
      });
      return;
    } else {
      this.drop(op, reply);
    }
    this.attempts = 0;
    this.sendError = "";
    this.emit();
  }

  acknowledge(op, status) {
    this.remove(op);
    op.state = "acked";
    if (op.op === "label") {
      this.saved += 1;
      if (op.restored && status === 201) {
        this.delta += 1; // a label from an earlier page the progress did not count yet
      }
      this.tellKernels({ type: "acked", item_id: op.item_id, label: op.label, client_id: op.client_id });
    } else if (op.op === "undo" && status === 200) {
      if (op.restored) {
        this.delta -= 1;
      } else {
        this.saved = Math.max(0, this.saved - 1);
      }
      this.tellKernels({ type: "undone", item_id: op.item_id });
    } else if (op.op === "skip" && op.restored) {
      this.skipped += 1;
    }
    if (!this.current) {
      this.refill(); // acknowledged items no longer take room in the server's answer
    }
  }

  drop(op, reply) {
    this.remove(op);
    op.state = "dropped";
    if (!op.restored && op.op === "label") {
      this.delta -= 1;
    } else if (!op.restored && op.op === "skip") {
      this.skipped -= 1;
    }
    const what = { label: "Label", skip: "Skip", undo: "Undo" }[op.op];
    this.refused = `${what} of item ${op.item_id} refused: ${messageOf(reply)}`;
  }
}

function sessionFor(labelset, user) {
  const key = `${labelset.id}:${user}`;
  if (!sessions.has(key)) {
    sessions.set(key, new Session(key, labelset));
  }
  return sessions.get(key);
}

// -- the view ---------------------------------------------------------------------------------

/** A new element with its class names and text (the standalone pages use it too). */
export function h(tag, className, text) {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/** A progress bar; `setProgress` fills it. */
export function progressBar() {
  const bar = h("div", "himalia-labeler-progress");
  bar.setAttribute("role", "progressbar");
  bar.append(h("div", "himalia-labeler-progress-done"));
  return bar;
}

export function setProgress(bar, done, total, label) {
  bar.setAttribute("aria-valuenow", String(done));
  bar.setAttribute("aria-valuemax", String(total));
  bar.setAttribute("aria-label", label);
  bar.firstChild.style.width = `${total ? (100 * done) / total : 0}%`;
}

function button(className, text, key) {
  const node = h("button", `himalia-labeler-button ${className}`);
  node.type = "button";
  node.append(h("span", "himalia-labeler-button-text", text));
  if (key) {
    node.append(h("kbd", "", key));
    node.setAttribute("aria-keyshortcuts", key === "⌫" ? "Backspace" : key);
  }
  return node;
}

function cellText(value) {
  return value !== null && typeof value === "object" ? JSON.stringify(value) : String(value ?? "");
}

class LabelerView {
  constructor(el, model, session, globalKeys) {
    this.el = el;
    this.model = model;
    this.session = session;
    this.drawnItem = undefined;
    this.drawnClasses = "";
    this.root = h("div", "himalia-labeler");
    this.root.tabIndex = 0;
    // JupyterLab's notebook shortcuts (a, b, c, 1..6, ...) do not fire inside the widget.
    this.root.setAttribute("data-lm-suppress-shortcuts", "true");
    this.root.setAttribute("data-p-suppress-shortcuts", "true");

    const header = h("header", "himalia-labeler-header");
    this.title = h("h2", "himalia-labeler-title");
    this.count = h("span", "himalia-labeler-count");
    header.append(this.title, this.count);
    this.bar = progressBar();
    this.instructions = h("details", "himalia-labeler-instructions");
    this.instructions.open = true;
    this.instructionsText = h("div", "himalia-labeler-instructions-text");
    this.instructions.append(h("summary", "", "Instructions"), this.instructionsText);
    this.hint = h("div", "himalia-labeler-focus-hint", "Click here to label with the keyboard");
    this.item = h("div", "himalia-labeler-item");
    this.item.setAttribute("aria-live", "polite");
    this.classes = h("div", "himalia-labeler-classes");
    this.classes.setAttribute("role", "group");
    this.classes.setAttribute("aria-label", "Classes");

    const actions = h("div", "himalia-labeler-actions");
    this.submitButton = button("himalia-labeler-submit", "Submit", "Enter");
    this.undoButton = button("himalia-labeler-undo", "Undo", "u");
    this.skipButton = button("himalia-labeler-skip", "Skip", "s");
    this.commentBox = h("input", "himalia-labeler-comment");
    this.commentBox.type = "text";
    this.commentBox.placeholder = "Comment (c)";
    this.commentBox.setAttribute("aria-label", "Comment on this item");
    actions.append(this.submitButton, this.undoButton, this.skipButton, this.commentBox);

    const footer = h("footer", "himalia-labeler-footer");
    this.state = h("span", "himalia-labeler-state");
    this.state.setAttribute("role", "status");
    this.retryButton = button("himalia-labeler-retry", "Retry");
    this.refusal = h("div", "himalia-labeler-refused");
    this.refusal.setAttribute("role", "alert");
    this.refusalText = h("span");
    this.dismissButton = button("himalia-labeler-dismiss", "Dismiss");
    this.refusal.append(this.refusalText, this.dismissButton);
    footer.append(this.state, this.retryButton);

    this.root.append(header, this.bar, this.instructions, this.hint, this.item, this.classes,
      actions, footer, this.refusal);
    el.replaceChildren(this.root);

    this.submitButton.addEventListener("click", () => this.act(() => session.submit()));
    this.undoButton.addEventListener("click", () => this.act(() => session.undo()));
    this.skipButton.addEventListener("click", () => this.act(() => session.skip()));
    this.retryButton.addEventListener("click", () => this.act(() => session.retryNow()));
    this.dismissButton.addEventListener("click", () => this.act(() => session.dismiss()));
    this.commentBox.addEventListener("input", () => {
      session.comment = this.commentBox.value;
    });
    this.onKey = this.onKey.bind(this);
    this.keyTarget = globalKeys ? document : this.root;
    this.keyTarget.addEventListener("keydown", this.onKey);
    requestAnimationFrame(() => this.root.isConnected && this.root.focus({ preventScroll: true }));
  }

  act(fn) {
    fn();
    this.root.focus({ preventScroll: true });
  }

  keys() {
    const count = (this.session.labelset.classes || []).length;
    const keys = this.model.get("shortcuts");
    return Array.isArray(keys) && keys.length === count ? keys : shortcutKeys(count);
  }

  onKey(event) {
    if (event.target === this.commentBox) {
      if (event.key === "Escape" || event.key === "Enter") {
        this.root.focus({ preventScroll: true });
        event.preventDefault();
      }
      event.stopPropagation(); // typing a comment, not labeling
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) {
      return;
    }
    if (event.target instanceof HTMLElement && event.target.closest("input, textarea, select")) {
      return; // the standalone page's other fields
    }
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    const action = this.action(key);
    if (!action) {
      return;
    }
    event.preventDefault();
    event.stopPropagation();
    if (!event.repeat) {
      action(); // a held key acts once
    }
  }

  /** What a key does, or null for keys that are not the labeler's. */
  action(key) {
    const s = this.session;
    const index = this.keys().indexOf(key);
    if (index >= 0) {
      const name = s.labelset.classes[index];
      return s.multi ? () => s.toggle(name) : () => s.label(name);
    }
    const actions = {
      Enter: s.multi ? () => s.submit() : null,
      Backspace: () => s.undo(),
      u: () => s.undo(),
      s: () => s.skip(),
      c: () => this.commentBox.focus(),
    };
    return (Object.hasOwn(actions, key) && actions[key]) || null;
  }

  /** Brings the DOM up to date with the session; the item and the buttons only when changed. */
  update() {
    const s = this.session;
    const ls = s.labelset;
    const { done, total } = s.progress();
    this.title.textContent = ls.name || "";
    this.count.textContent = `${done} / ${total}`;
    setProgress(this.bar, done, total, `${done} of ${total} labeled`);
    this.instructions.hidden = !ls.instructions;
    this.instructionsText.textContent = ls.instructions || "";

    const classesKey = JSON.stringify([ls.classes, ls.task, this.keys()]);
    if (classesKey !== this.drawnClasses) {
      this.drawClasses();
      this.drawnClasses = classesKey;
    }
    const previous = new Set([].concat(s.undoneLabel ?? []));
    for (const node of this.classes.children) {
      const name = node.dataset.class;
      node.classList.toggle("himalia-labeler-previous", previous.has(name));
      node.disabled = !s.current;
      if (s.multi) {
        node.setAttribute("aria-pressed", String(s.selected.has(name)));
      }
    }
    this.submitButton.hidden = !s.multi;
    this.submitButton.disabled = this.skipButton.disabled = !s.current;
    this.undoButton.disabled = !s.history.length;

    const itemState = s.current || (s.loadError ? "error" : s.exhausted ? "empty" : "loading");
    if (itemState !== this.drawnItem) {
      this.drawItem(itemState);
      this.drawnItem = itemState;
      if (this.commentBox.value !== s.comment) {
        this.commentBox.value = s.comment;
      }
    }

    const pending = s.outbox.length;
    let state;
    if (s.sendError) {
      state = `saving ${pending}… ${s.sendError}`;
    } else if (s.loadError) {
      state = s.loadError;
    } else if (pending) {
      state = `saving ${pending}…`;
    } else {
      state = `all ${s.saved} saved`;
    }
    this.state.textContent = state;
    this.state.classList.toggle("himalia-labeler-error", Boolean(s.sendError || s.loadError));
    this.retryButton.hidden = !(s.sendError || s.loadError);
    this.refusal.hidden = !s.refused;
    this.refusalText.textContent = s.refused;

    this.root.dataset.itemId = s.current ? s.current.id : "";
    this.root.dataset.pending = String(pending);
    this.root.dataset.saved = String(s.saved);
    this.root.setAttribute("aria-label", `Labeling ${ls.name || ""}`);
  }

  drawClasses() {
    const s = this.session;
    const keys = this.keys();
    const nodes = (s.labelset.classes || []).map((name, i) => {
      const node = button("himalia-labeler-class", name, keys[i]);
      node.dataset.class = name;
      node.addEventListener("click", () => this.act(() => (s.multi ? s.toggle(name) : s.label(name))));
      return node;
    });
    this.classes.replaceChildren(...nodes);
  }

  drawItem(state) {
    const s = this.session;
    if (typeof state === "string") {
      const messages = {
        loading: "Loading…",
        error: "The items could not be loaded.",
        empty: "Nothing left to label for you.",
      };
      const box = h("div", `himalia-labeler-message himalia-labeler-${state}`, messages[state]);
      if (state === "empty") {
        const again = button("himalia-labeler-again", "Check again");
        again.addEventListener("click", () => this.act(() => s.checkAgain()));
        box.append(again);
      }
      this.item.replaceChildren(box);
      return;
    }
    const item = state;
    let body;
    if (item.kind === "image") {
      body = h("img", "himalia-labeler-image");
      body.alt = `Item ${item.id}`;
      body.src = s.transport.imageUrl(item);
    } else if (item.kind === "row") {
      body = h("table", "himalia-labeler-row");
      for (const [key, value] of Object.entries(item.row || {})) {
        const tr = h("tr");
        tr.append(h("th", "", key), h("td", "", cellText(value)));
        body.append(tr);
      }
    } else {
      body = h("div", "himalia-labeler-text", item.text ?? "");
    }
    const meta = h("div", "himalia-labeler-meta", `Item ${item.id}${item.source ? ` · ${item.source}` : ""}`);
    this.item.replaceChildren(body, meta);
  }

  destroy() {
    this.keyTarget.removeEventListener("keydown", this.onKey);
    this.root.remove();
    this.session.detach(this);
  }
}

/** Shows the labeler of `model` (a widget model, or a page's stand-in) in `el`. */
function attach(el, model, { user, transport = null, globalKeys = false }) {
  let view = null;
  const open = () => {
    view?.destroy();
    const session = sessionFor(model.get("labelset") || {}, user);
    view = new LabelerView(el, model, session, globalKeys);
    session.attach(view, transport);
  };
  const changed = () => {
    const labelset = model.get("labelset") || {};
    if (labelset.id !== view.session.labelset.id) {
      open();
    } else if (JSON.stringify(labelset) !== JSON.stringify(view.session.labelset)) {
      // Changed in the kernel (not the kernel's echo of what the session set).
      view.session.setLabelset(labelset, false);
    }
  };
  const received = (msg) => view.session.transport?.receive?.(msg);
  const redraw = () => view.update();
  model.on("change:labelset", changed);
  model.on("change:shortcuts", redraw);
  model.on("msg:custom", received);
  open();
  return () => {
    model.off("change:labelset", changed);
    model.off("change:shortcuts", redraw);
    model.off("msg:custom", received);
    view.destroy();
  };
}

/** A model for the page outside Jupyter: the widget's state, with no kernel behind it. */
function localModel(state) {
  const listeners = new Map();
  return {
    local: true,
    get: (name) => state[name],
    set(name, value) {
      state[name] = value;
      (listeners.get(`change:${name}`) || []).forEach((fn) => fn());
    },
    on(name, fn) {
      listeners.set(name, [...(listeners.get(name) || []), fn]);
    },
    off(name, fn) {
      listeners.set(name, (listeners.get(name) || []).filter((f) => f !== fn));
    },
    send() {},
    save_changes() {},
  };
}

/**
 * The standalone page: label `config.labelset` in `el`, calling `config.api` with the page's
 * session (`config.xsrf`) as `config.user`. Returns a function that takes it down.
 */
export function mount(el, config) {
  const classes = config.labelset.classes || [];
  const model = localModel({ labelset: config.labelset, shortcuts: shortcutKeys(classes.length),
    counted: 0, pending: 0, error: "" });
  const transport = httpTransport(config.api, () => config.xsrf);
  return attach(el, model, { user: config.user || "", transport, globalKeys: true });
}

function render({ model, el }) {
  return attach(el, model, { user: jupyterPageConfig()?.hubUser || "" });
}

export default { render };
