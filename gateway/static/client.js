// hopline browser client: one dependency-free ES module, served by the gateway at /client.js.
//
//   import { connect, streamRequest } from "http://localhost:8000/client.js";
//   const client = connect();                    // the gateway that served this file
//   const reply = await client.request("hello"); // "hello world"
//   await client.request("job", { onChunk: (chunk) => show(chunk) }); // streamed replies
//   for await (const chunk of client.stream("job")) show(chunk);
//   const text = await streamRequest("hello");   // one request over EventSource (/stream)
//
// connect(url, options) speaks hopline.v1 over one WebSocket: every request gets a numeric
// id and its reply is matched by id (replies may come out of order). Chunks of a streamed
// reply arrive as {"id", "data", "more": true}; the last chunk is an ordinary reply.
// When the socket drops, requests already sent fail with code "disconnected" (they may or
// may not have run: retry only what is safe to repeat); requests not yet sent wait for the
// reconnection (backoff: minDelay doubling up to maxDelay, with jitter). A token goes in
// the "hopline.token.<jwt>" subprotocol entry, never in the URL; the gateway does not
// echo it. Failures reject with a HoplineError whose .code is one of the gateway's codes
// (timeout, busy, unavailable, processor_error, too_large, bad_request) or, from this
// client: disconnected, closed, refused, unauthorized, forbidden, unreachable.

export const SUBPROTOCOL = "hopline.v1";
const TOKEN_PREFIX = "hopline.token.";

/** A request that ended without a reply; `code` says why. */
export class HoplineError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "HoplineError";
    this.code = code;
  }
}

/** The http(s) base URL of the gateway that serves `url` (ws/wss/http/https, any path). */
export function httpBase(url) {
  const u = new URL(url, import.meta.url);
  const scheme = u.protocol === "wss:" || u.protocol === "https:" ? "https:" : "http:";
  const prefix = u.pathname.replace(/\/(ws|client\.js|stream\/.*)?$/, "");
  return `${scheme}//${u.host}${prefix}`;
}

function wsUrl(base) {
  return base.replace(/^http/, "ws") + "/ws";
}

/**
 * Why a gateway cannot be used from this page, asked of its /health (which runs nothing):
 * "healthy" (it answers: a refusal came from the token or the connection limit),
 * "unavailable" (503: draining or broker down), "forbidden" (it answers but does not
 * grant this origin CORS: the origin is not allowed), or "unreachable" (no answer).
 */
export async function probe(base = httpBase(import.meta.url)) {
  const url = `${base}/health`;
  try {
    const response = await fetch(url, { cache: "no-store" });
    return response.ok ? "healthy" : "unavailable";
  } catch {
    try {
      await fetch(url, { mode: "no-cors", cache: "no-store" }); // opaque: it answered
    } catch {
      return "unreachable";
    }
    // It answers now, but the first fetch may have failed only because the gateway was
    // not listening yet (a restart between the two): ask once more before saying origin.
    try {
      const again = await fetch(url, { cache: "no-store" });
      return again.ok ? "healthy" : "unavailable";
    } catch {
      return "forbidden";
    }
  }
}

// Why a handshake failed: /health, then (a healthy gateway refused it) a HEAD on /stream,
// which goes through the same admission (token, connection limit) and runs nothing; a HEAD
// that is admitted means the gateway is back ("transient").
async function diagnose(base, token) {
  const health = await probe(base);
  if (health !== "healthy") return health;
  try {
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    const response = await fetch(`${base}/stream/-`, { method: "HEAD", headers, cache: "no-store" });
    // Admitted now: nothing refuses this page; the gateway was down or restarting when the
    // handshake failed (a diagnosis is taken after the failure, so it can see the gateway back).
    if (response.ok) return "transient";
    return { 401: "unauthorized", 503: "busy" }[response.status] ?? "refused";
  } catch {
    return "refused";
  }
}

/** Open a client; `url` defaults to the /ws of the gateway that served this module. */
export function connect(url, options = {}) {
  return new Client(url ?? wsUrl(httpBase(import.meta.url)), options);
}

class Client {
  /**
   * options: token (string, or a function returning one or a promise of one; called on
   * every (re)connection), timeout (ms per request, default 30000, 0 for none),
   * reconnect (default true), minDelay (250 ms), maxDelay (10000 ms),
   * onstatus(status): {state: "open"|"closed", code, reason, diagnosis, retryIn};
   * diagnosis (only when the handshake failed): "unauthorized" (bad or missing token),
   * "busy" (connection limit), "forbidden" (origin not allowed), "unavailable" (draining,
   * broker down), "unreachable", "transient" (the gateway admits this page again: it was
   * down or restarting when the handshake failed), or "refused" (refused for another reason).
   */
  constructor(url, options) {
    this.url = url;
    this.options = { timeout: 30000, reconnect: true, minDelay: 250, maxDelay: 10000, ...options };
    this.state = "connecting";
    this._pending = new Map();
    this._nextId = 1;
    this._attempt = 0;
    this._ws = null;
    this._timer = null;
    this._closed = false;
    this._token = null;
    this._open();
  }

  /** The reply to `data` (chunks joined); `onChunk(chunk)` sees each chunk, the last too. */
  request(data, { timeout = this.options.timeout, onChunk = null } = {}) {
    if (this._closed) return Promise.reject(new HoplineError("closed", "the client is closed"));
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      const entry = { id, data, resolve, reject, onChunk, chunks: [], sent: false, timer: null };
      if (timeout > 0) {
        const error = new HoplineError("timeout", `no reply within ${timeout} ms`);
        entry.timer = setTimeout(() => this._settle(entry, error), timeout);
      }
      this._pending.set(id, entry);
      this._send(entry);
    });
  }

  /** The chunks of the reply to `data`, as they arrive (an async iterator). */
  async *stream(data, options = {}) {
    const chunks = [];
    let wake = null;
    let finished = false;
    let failure = null;
    const notify = () => wake && wake();
    this.request(data, { ...options, onChunk: (chunk) => (chunks.push(chunk), notify()) }).then(
      () => ((finished = true), notify()),
      (error) => ((failure = error), (finished = true), notify()),
    );
    for (;;) {
      if (chunks.length) {
        yield chunks.shift();
      } else if (finished) {
        if (failure) throw failure;
        return;
      } else {
        await new Promise((resolve) => (wake = resolve));
        wake = null;
      }
    }
  }

  /** Close the socket; pending requests fail with code "closed". */
  close() {
    this._closed = true;
    clearTimeout(this._timer);
    for (const entry of [...this._pending.values()]) {
      this._settle(entry, new HoplineError("closed", "the client was closed"));
    }
    if (this._ws) this._ws.close(1000, "client closed");
    this.state = "closed";
  }

  async _open() {
    let token = this.options.token;
    try {
      if (typeof token === "function") token = await token();
    } catch (error) {
      return this._dropped({ code: 1006, reason: `token: ${error}` }, false);
    }
    if (this._closed) return;
    this._token = token;
    const protocols = token ? [SUBPROTOCOL, TOKEN_PREFIX + token] : [SUBPROTOCOL];
    const ws = new WebSocket(this.url, protocols);
    let opened = false;
    this._ws = ws;
    ws.onopen = () => {
      opened = true;
      this._attempt = 0;
      this.state = "open";
      this._status({ state: "open" });
      for (const entry of this._pending.values()) this._send(entry);
    };
    ws.onmessage = (event) => this._receive(event.data);
    ws.onclose = (event) => this._dropped(event, opened);
  }

  _send(entry) {
    const ws = this._ws;
    if (!entry.sent && ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ id: entry.id, data: entry.data }));
      entry.sent = true;
    }
  }

  _receive(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return; // not a hopline.v1 frame
    }
    const entry = this._pending.get(frame.id);
    if (!entry) return; // a late reply to a request that timed out here
    if (frame.error) {
      this._settle(entry, new HoplineError(frame.error.code, frame.error.message));
      return;
    }
    entry.chunks.push(frame.data);
    if (entry.onChunk) entry.onChunk(frame.data);
    if (frame.more !== true) this._settle(entry, null, entry.chunks.join(""));
  }

  _settle(entry, error, reply) {
    if (!this._pending.delete(entry.id)) return;
    clearTimeout(entry.timer);
    if (error) entry.reject(error);
    else entry.resolve(reply);
  }

  async _dropped(event, opened) {
    this._ws = null;
    for (const entry of [...this._pending.values()]) {
      if (entry.sent) {
        const why = `the connection closed (${event.code}${event.reason ? " " + event.reason : ""})`;
        this._settle(entry, new HoplineError("disconnected", `${why}: the request may have run`));
      }
    }
    if (this._closed) return;
    this.state = "connecting";
    // A handshake that failed (close 1006 before open) says nothing: ask the gateway why.
    const diagnosis = opened ? null : await diagnose(httpBase(this.url), this._token);
    if (this._closed) return;
    const status = { state: "closed", code: event.code, reason: event.reason, diagnosis };
    if (!this.options.reconnect) {
      this.close();
      this._status(status);
      return;
    }
    const { minDelay, maxDelay } = this.options;
    const delay = Math.min(maxDelay, minDelay * 2 ** this._attempt) * (0.5 + Math.random() / 2);
    this._attempt += 1;
    this._status({ ...status, retryIn: Math.round(delay) });
    this._timer = setTimeout(() => this._open(), delay);
  }

  _status(status) {
    if (this.options.onstatus) this.options.onstatus(status);
  }
}

/**
 * One request over EventSource (GET /stream/<message>): resolves with the reply (chunks
 * joined), calling `onChunk` for each; rejects with a HoplineError. `token` is a
 * short-lived stream token (`hopline token --purpose stream --ttl 60`), sent in the
 * query string; never put a long-lived token there. A refusal before anything ran is
 * read with a HEAD request (it runs nothing): code "unauthorized" (401), "forbidden"
 * (403), "busy" (503 at the connection limit) or "unreachable".
 */
export function streamRequest(message, { base = httpBase(import.meta.url), token, onChunk } = {}) {
  const query = token ? `?token=${encodeURIComponent(token)}` : "";
  const url = `${base}/stream/${encodeURIComponent(message)}${query}`;
  return new Promise((resolve, reject) => {
    const source = new EventSource(url);
    const chunks = [];
    let failure = null;
    let opened = false;
    source.onopen = () => (opened = true);
    source.onmessage = (event) => {
      chunks.push(event.data);
      if (onChunk) onChunk(event.data);
    };
    source.addEventListener("error", (event) => {
      if (event.data !== undefined) {
        // the gateway's "event: error": the request failed, "end" follows
        const { code, message: text } = JSON.parse(event.data).error;
        failure = new HoplineError(code, text);
      } else if (source.readyState === EventSource.CLOSED) {
        // the connection failed (a refusal) or a reconnect got 204 (no "end" was seen)
        source.close();
        if (opened) {
          reject(new HoplineError("disconnected", "the stream ended early: it may have run"));
        } else {
          refusal(url).then(reject);
        }
      }
    });
    source.addEventListener("end", () => {
      source.close();
      if (failure) reject(failure);
      else resolve(chunks.join(""));
    });
  });
}

async function refusal(url) {
  const codes = { 401: "unauthorized", 403: "forbidden", 503: "busy", 405: "refused" };
  try {
    const response = await fetch(url, { method: "HEAD", cache: "no-store" });
    if (response.ok) {
      // admitted now: the gateway was down or restarting when the stream failed to open
      return new HoplineError("unreachable", "the stream did not open; the gateway answers now");
    }
    const code = codes[response.status] ?? "refused";
    return new HoplineError(code, `the gateway refused the stream (${response.status})`);
  } catch {
    const diagnosis = await probe(httpBase(url));
    return new HoplineError(diagnosis === "forbidden" ? "forbidden" : "unreachable", diagnosis);
  }
}
