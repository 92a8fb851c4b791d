// dolphin-bridge JavaScript adapter SDK: typed helpers over the WIT imports of
// `dolphin:bridge@0.2.0` (config, http, kv, log, crypto) and an exception guard for the two
// exports.
//
// An adapter imports what it needs from this file, on one line; its build joins the two into
// the one source componentize-js takes (`join.mjs`): the adapter first, line for line, and this
// file in a scope of its own, so its names never clash with the adapter's.
//
// Top-level code (here and in the adapter) runs once, when the component is built (componentize-js
// snapshots the initialized engine with wizer): read the clock (`Date.now()`) and randomness
// (`Math.random()`, `crypto.getRandomValues`, `hostCrypto.randomBytes`) inside the exports only.

import { get as configGet } from 'dolphin:bridge/config@0.2.0';
import {
  hmac as cryptoHmac,
  sha256 as cryptoSha256,
  constantTimeEqual as cryptoConstantTimeEqual,
  randomBytes as cryptoRandomBytes,
} from 'dolphin:bridge/crypto@0.2.0';
import { send as httpSend } from 'dolphin:bridge/http@0.2.0';
import { get as kvGet, set as kvSet, delete as kvDelete } from 'dolphin:bridge/kv@0.2.0';
import { log as hostLog } from 'dolphin:bridge/log@0.2.0';

const sdkEncoder = new TextEncoder();
const sdkDecoder = new TextDecoder();

/** The largest `after-ms` (a WIT `u64`). */
const MAX_AFTER_MS = (1n << 64n) - 1n;

/** `value` (milliseconds) as a whole non-negative number rounded up, or undefined. */
function clampMs(value) {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'bigint') return value < 0n ? 0 : value > MAX_AFTER_MS ? MAX_AFTER_MS : value;
  if (typeof value !== 'number') throw new TypeError(`afterMs must be a number of milliseconds, not ${typeof value}`);
  if (Number.isNaN(value)) return undefined;
  if (value <= 0) return 0;
  return value >= 2 ** 64 ? MAX_AFTER_MS : Math.ceil(value);
}

/**
 * A transient failure: the host retries the delivery later (WIT `adapter-error.retry-later`).
 * `options.afterMs` (milliseconds from now) is the vendor's own hint of when to come back
 * (`Retry-After`, a rate limit's reset): the host waits at least that long (at most one hour, and
 * never less than its own schedule); without it the host's schedule alone decides.
 */
export class RetryLater extends Error {
  constructor(message, { afterMs } = {}) {
    super(message);
    this.name = 'RetryLater';
    this.afterMs = clampMs(afterMs);
  }
}

/** A failure that will never succeed as is: no retry (WIT `adapter-error.permanent`). */
export class Permanent extends Error {
  constructor(message) {
    super(message);
    this.name = 'Permanent';
  }
}

/**
 * An HTTP answer the caller did not accept: `status`, the parsed `body` (or undefined), the
 * answer's `headers` (WIT pairs), whether it is `transient` (408, 429, 5xx: retry later) and, for
 * a transient one, `retryAfterMs`: the wait its headers ask for (see `retryAfterMs`), else
 * undefined.
 */
export class HttpStatusError extends Error {
  constructor(message, status, body, transient, headers = [], retryAfterMs = undefined) {
    super(message);
    this.name = 'HttpStatusError';
    this.status = status;
    this.body = body;
    this.transient = transient;
    this.headers = headers;
    this.retryAfterMs = retryAfterMs;
  }
}

function fieldPairs(fields) {
  return Object.entries(fields ?? {}).map(([name, value]) => [name, String(value)]);
}

/** Structured logging into the host's log (tagged there with tenant and delivery id). */
export const logger = {
  trace: (message, fields) => hostLog('trace', message, fieldPairs(fields)),
  debug: (message, fields) => hostLog('debug', message, fieldPairs(fields)),
  info: (message, fields) => hostLog('info', message, fieldPairs(fields)),
  warn: (message, fields) => hostLog('warn', message, fieldPairs(fields)),
  error: (message, fields) => hostLog('error', message, fieldPairs(fields)),
};

/** The tenant's `[tenants.config]` and `[tenants.secrets]` values. */
export const config = {
  /** The value of `key`, or undefined. */
  get(key) {
    return configGet(key);
  },
  /** The value of `key`, or `fallback` when it is unset or blank. */
  getOr(key, fallback) {
    const value = configGet(key);
    return value === undefined || value.trim() === '' ? fallback : value;
  },
  /** The value of `key`; a missing or blank key is a Permanent error naming it. */
  require(key) {
    const value = configGet(key);
    if (value === undefined || value.trim() === '') {
      throw new Permanent(`config key \`${key}\` is required`);
    }
    return value;
  },
};

/** Whether an HTTP status is worth retrying: 408, 429 and 5xx. */
export function isTransientStatus(status) {
  return status === 408 || status === 429 || status >= 500;
}

/** What Rust's `str::trim` removes (Unicode White_Space), at either end of a header value. */
const HINT_TRIMMED =
  /^[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/g;
const IMF_MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
/** An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), its parts separated by ASCII whitespace. */
const IMF_FIXDATE = (() => {
  const sp = '[ \\t\\n\\f\\r]+';
  return new RegExp(
    `^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),${sp}([0-9]{2})${sp}(${IMF_MONTHS.join('|')})${sp}([0-9]{4})` +
      `${sp}([0-9]{2}):([0-9]{2}):([0-9]{2})${sp}GMT$`,
  );
})();
/** 2001-09-09 in Unix seconds, and in milliseconds: smaller numbers are no timestamps of these years. */
const EPOCH_SECONDS_FROM = 1_000_000_000n;
const EPOCH_MILLIS_FROM = EPOCH_SECONDS_FROM * 1000n;

/**
 * How long a vendor's answer (WIT header pairs) asks the caller to wait, in milliseconds from
 * now, or undefined. Read from its headers (names compared case-insensitively, the first of each
 * used), as the Rust SDK's `http::retry_after_ms` does:
 * 1. `Retry-After` (RFC 9110): delay-seconds (`120`), or an IMF-fixdate (`Wed, 21 Oct 2015
 *    07:28:00 GMT`) measured from the wall clock; a date in the past is 0. The obsolete RFC 850
 *    and asctime date formats, negative or fractional numbers and anything else are ignored.
 * 2. Otherwise (no `Retry-After`, or one it cannot read) `X-RateLimit-Reset` when it is a Unix
 *    timestamp: in seconds (from 1 000 000 000, `1700000000`) or milliseconds (from
 *    1 000 000 000 000, `1700000000000`), measured from the wall clock; a reset in the past is 0.
 *    A smaller number is ignored (some vendors send the seconds until the reset there, which
 *    cannot be told from a timestamp reliably), as is anything else.
 * Undefined when neither gives a wait. The result is a number; a wait beyond a `u64` saturates
 * at `u64::MAX` (2 ** 64 as a number, which `RetryLater` turns into the WIT maximum). The host
 * caps the wait at one hour and never retries sooner than its own schedule says. `nowMs` is the
 * wall clock's time in Unix milliseconds (`Date.now()`, read on each call).
 */
export function retryAfterMs(headers, nowMs = Date.now()) {
  const list = headers ?? [];
  const now = Number.isFinite(nowMs) && nowMs >= 0 ? BigInt(Math.floor(nowMs)) : undefined;
  const retryAfter = header(list, 'retry-after');
  let wait = retryAfter === undefined ? undefined : parseRetryAfterHeader(retryAfter, now);
  if (wait === undefined) {
    const value = header(list, 'x-ratelimit-reset');
    const reset = value === undefined ? undefined : parseRateLimitResetHeader(value);
    if (reset !== undefined && now !== undefined) wait = reset > now ? reset - now : 0n;
  }
  return wait === undefined ? undefined : Number(wait);
}

/** A `Retry-After` value in milliseconds (BigInt) from `now` (Unix milliseconds as a BigInt;
 * undefined when the clock is unknown, then only delay-seconds are read). */
function parseRetryAfterHeader(value, now) {
  const text = value.replace(HINT_TRIMMED, '');
  const seconds = parseHintDigits(text);
  if (seconds !== undefined) return saturateU64(seconds * 1000n);
  const atSeconds = parseImfFixdateSeconds(text);
  if (atSeconds === undefined || now === undefined) return undefined;
  const at = atSeconds * 1000n;
  return at > now ? at - now : 0n;
}

/** An `X-RateLimit-Reset` that is a Unix timestamp, in Unix milliseconds (BigInt). */
function parseRateLimitResetHeader(value) {
  const number = parseHintDigits(value.replace(HINT_TRIMMED, ''));
  if (number === undefined || number < EPOCH_SECONDS_FROM) return undefined;
  return number >= EPOCH_MILLIS_FROM ? number : number * 1000n;
}

/** A non-empty run of ASCII digits as a BigInt (`u64::MAX` when larger). */
function parseHintDigits(text) {
  return /^[0-9]+$/.test(text) ? saturateU64(BigInt(text)) : undefined;
}

function saturateU64(value) {
  return value > MAX_AFTER_MS ? MAX_AFTER_MS : value;
}

/** An IMF-fixdate in Unix seconds (BigInt), range-checked as the Rust SDK does (day 1..=31 in
 * any month, rolling over; second up to 60). */
function parseImfFixdateSeconds(text) {
  const match = IMF_FIXDATE.exec(text);
  if (match === null) return undefined;
  const [day, year, hour, minute, second] = [1, 3, 4, 5, 6].map((i) => Number(match[i]));
  if (year < 1970 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return undefined;
  return BigInt(Date.UTC(year, IMF_MONTHS.indexOf(match[2]), day, hour, minute, second) / 1000);
}

function parseJsonBody(bytes) {
  if (bytes.length === 0) return undefined;
  try {
    return JSON.parse(sdkDecoder.decode(bytes));
  } catch {
    return undefined;
  }
}

/** A short, secret-free description of an error body: JSON `errors[].title`/`message`/`error`. */
function describeBody(body) {
  if (body === undefined || body === null || typeof body !== 'object') return '';
  const list = Array.isArray(body.errors) ? body.errors : [];
  const titles = list.map((e) => [e?.code, e?.title ?? e?.message].filter(Boolean).join(': ')).filter(Boolean);
  if (titles.length > 0) return ` (${titles.join('; ')})`;
  const single = body.message ?? body.error;
  return typeof single === 'string' ? ` (${single})` : '';
}

/**
 * Outbound HTTP through the host. Every call returns `{status, headers, body}` (body parsed as
 * JSON when it is JSON) for 2xx answers and the statuses listed in `options.accept`; other
 * answers throw an HttpStatusError: 408/429/5xx are retried later (after the wait the answer's
 * headers ask for, when they do: see `retryAfterMs`), anything else is permanent. Timeouts and connection
 * failures throw RetryLater; a URL the tenant may not call and a host limit Permanent. `what`
 * names the call in errors.
 */
export const http = {
  request({ method, url, headers = {}, body, what = `${method} request`, accept = [] }) {
    const headerList = Object.entries(headers).map(([name, value]) => [name, String(value)]);
    let answer;
    try {
      answer = httpSend({ method, url, headers: headerList, body: body ?? new Uint8Array() });
    } catch (e) {
      const error = e?.payload ?? e;
      const detail = error?.val ? `: ${error.val}` : '';
      if (error?.tag === 'timeout' || error?.tag === 'connection') {
        throw new RetryLater(`${what} failed: ${error.tag}${detail}`);
      }
      throw new Permanent(`${what} failed: ${error?.tag ?? 'error'}${detail}`);
    }
    const parsed = parseJsonBody(answer.body);
    const ok = (answer.status >= 200 && answer.status < 300) || accept.includes(answer.status);
    if (!ok) {
      const transient = isTransientStatus(answer.status);
      const after = transient ? retryAfterMs(answer.headers) : undefined;
      throw new HttpStatusError(
        `${what} answered ${answer.status}${describeBody(parsed)}`,
        answer.status,
        parsed,
        transient,
        answer.headers,
        after,
      );
    }
    return { status: answer.status, headers: answer.headers, body: parsed };
  },
  /** GET `url` expecting JSON. */
  getJson(url, options = {}) {
    return http.request({ ...options, method: 'GET', url, headers: { accept: 'application/json', ...options.headers } });
  },
  /** POST `value` as JSON to `url`. */
  postJson(url, value, options = {}) {
    return http.request({
      ...options,
      method: 'POST',
      url,
      headers: { accept: 'application/json', 'content-type': 'application/json', ...options.headers },
      body: sdkEncoder.encode(JSON.stringify(value)),
    });
  },
};

/** The tenant's key-value store with JSON values; store failures are RetryLater. */
export const kv = {
  /** The JSON value of `key`, or undefined. A value that is not JSON reads as undefined. */
  getJson(key) {
    let bytes;
    try {
      bytes = kvGet(key);
    } catch (e) {
      throw new RetryLater(`kv get failed: ${e?.payload ?? e}`);
    }
    return bytes === undefined ? undefined : parseJsonBody(bytes);
  },
  setJson(key, value) {
    try {
      kvSet(key, sdkEncoder.encode(JSON.stringify(value)));
    } catch (e) {
      throw new RetryLater(`kv set failed: ${e?.payload ?? e}`);
    }
  },
  delete(key) {
    try {
      kvDelete(key);
    } catch (e) {
      throw new RetryLater(`kv delete failed: ${e?.payload ?? e}`);
    }
  },
};

const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** `value` as bytes: a Uint8Array (or other byte view) as is, a string as UTF-8. */
function bytesOf(value, what) {
  if (typeof value === 'string') return sdkEncoder.encode(value);
  if (value instanceof Uint8Array) return value;
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  throw new TypeError(`${what} must be a string or bytes`);
}

/** Lowercase hex of bytes. */
export function toHex(bytes) {
  let out = '';
  for (const byte of bytes) out += byte.toString(16).padStart(2, '0');
  return out;
}

/** The bytes of a hex string (either case), or undefined when it is not hex. */
function fromHex(text) {
  if (typeof text !== 'string' || text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) return undefined;
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

const HMAC_HASHES = new Set(['sha1', 'sha256', 'sha512']);

/**
 * Hashes, HMAC, comparison and randomness computed by the host (the WIT `crypto` interface).
 * Keys, messages and data are strings (UTF-8) or Uint8Arrays; results are Uint8Arrays (`toHex`
 * gives lowercase hex). Named `hostCrypto` so that the global `crypto` (Web Crypto's
 * `crypto.getRandomValues`) stays reachable from the adapter.
 */
export const hostCrypto = {
  /** HMAC of `message` with `key`; `hash` is `'sha1'`, `'sha256'` or `'sha512'`. */
  hmac(hash, key, message) {
    const name = String(hash).toLowerCase().replace('-', '');
    if (!HMAC_HASHES.has(name)) throw new TypeError(`unknown HMAC hash ${hash}: use sha1, sha256 or sha512`);
    return cryptoHmac(name, bytesOf(key, 'key'), bytesOf(message, 'message'));
  },
  /** HMAC-SHA256 of `message` with `key` (32 bytes). */
  hmacSha256(key, message) {
    return hostCrypto.hmac('sha256', key, message);
  },
  /** The SHA-256 digest of `data` (32 bytes). */
  sha256(data) {
    return cryptoSha256(bytesOf(data, 'data'));
  },
  /** Whether `a` and `b` are equal, compared in a time that depends only on their lengths. */
  constantTimeEqual(a, b) {
    return cryptoConstantTimeEqual(bytesOf(a, 'a'), bytesOf(b, 'b'));
  },
  /** `n` bytes from the host's cryptographically secure generator (fetched 1024 a call). */
  randomBytes(n) {
    if (!Number.isInteger(n) || n < 0) throw new RangeError('randomBytes: n must be a non-negative integer');
    const out = new Uint8Array(n);
    for (let at = 0; at < n; ) {
      const chunk = cryptoRandomBytes(Math.min(1024, n - at));
      out.set(chunk, at);
      at += chunk.length;
      if (chunk.length === 0) throw new Error('randomBytes: the host returned no bytes');
    }
    return out;
  },
  /**
   * Whether `givenHex` (what the request carries, without a `sha256=` prefix; either case) is the
   * HMAC-SHA256 of `message` with `secret`. Undefined, non-hex or a wrong length is false; the
   * digests are compared with the host's `constant-time-equal`, never `===`.
   */
  verifyHmacSha256Hex(secret, message, givenHex) {
    if (typeof givenHex !== 'string' || givenHex.length !== 64) return false;
    const given = fromHex(givenHex);
    if (given === undefined) return false;
    return hostCrypto.constantTimeEqual(hostCrypto.hmacSha256(secret, message), given);
  },
};

/** Standard base64 of a string's UTF-8 bytes. */
export function base64(text) {
  const bytes = sdkEncoder.encode(text);
  let out = '';
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    out += BASE64[(n >> 18) & 63] + BASE64[(n >> 12) & 63];
    out += i + 1 < bytes.length ? BASE64[(n >> 6) & 63] : '=';
    out += i + 2 < bytes.length ? BASE64[n & 63] : '=';
  }
  return out;
}

/** The `authorization` header value for HTTP Basic auth. */
export function basicAuth(user, password) {
  return `Basic ${base64(`${user}:${password}`)}`;
}

/** A bridge event (`{tag, val}`) or a webhook event (`{event, dedupeKey}`) as a webhook event. */
function toWebhookEvent(item, dedupeKey) {
  const isWebhookEvent = item !== null && typeof item === 'object' && !('tag' in item) && 'event' in item;
  const event = isWebhookEvent ? item.event : item;
  if (event === null || typeof event !== 'object' || (event.tag !== 'outgoing' && event.tag !== 'command')) {
    throw new TypeError('expected a bridge event ({tag: outgoing | command, val}) or {event, dedupeKey}');
  }
  const key = dedupeKey ?? (isWebhookEvent ? item.dedupeKey : undefined) ?? undefined;
  if (key !== undefined && typeof key !== 'string') throw new TypeError('a dedupe key must be a string');
  return { event, dedupeKey: key };
}

/** Builders for what `on-vendor-webhook` returns. */
export const webhook = {
  /** A JSON HTTP response for the vendor. */
  json(status, value) {
    return { status, headers: [['content-type', 'application/json']], body: sdkEncoder.encode(JSON.stringify(value)) };
  },
  /**
   * A webhook outcome: `events` for 3Dolphins, each a bridge event (no dedupe key) or one made
   * with `webhook.keyed`, and the response.
   */
  outcome(events, response) {
    return { events: events.map((item) => toWebhookEvent(item)), response };
  },
  /**
   * A bridge event with the vendor's own id for it (a message id, an event id) as its dedupe
   * key: the host drops a later event of the tenant with a key it stored within its dedupe
   * window, so a vendor's retry of a webhook reaches 3Dolphins once. An undefined key is none.
   */
  keyed(event, dedupeKey) {
    return toWebhookEvent(event, dedupeKey);
  },
  /** A webhook request's body parsed as JSON, or undefined when it is not JSON. */
  parseBody(request) {
    return parseJsonBody(request.body);
  },
  /** An Outgoing bridge event (`messageType`: text, image, video, audio, file, location). */
  outgoing(ticketNumber, messageType, message, mediaLink = '', extra = {}) {
    return {
      tag: 'outgoing',
      val: {
        ticketNumber,
        messageType,
        message,
        mediaLink,
        channel: undefined,
        customerName: undefined,
        extra: Object.entries(extra).map(([name, value]) => [name, JSON.stringify(value)]),
      },
    };
  },
  /** A Close command for a ticket. */
  close(ticketNumber) {
    return { tag: 'command', val: { ticketNumber, command: 'close', channel: undefined } };
  },
};

/** The first header `name` (case-insensitive) of a WIT header list, or undefined. */
export function header(headers, name) {
  const wanted = name.toLowerCase();
  return headers.find(([n]) => n.toLowerCase() === wanted)?.[1];
}

/** The WIT `adapter-error.retry-later(retry{reason, after-ms})`; `afterMs` in milliseconds or undefined. */
function retryLaterError(reason, afterMs) {
  const ms = clampMs(afterMs);
  return { tag: 'retry-later', val: { reason: String(reason), afterMs: ms === undefined ? undefined : BigInt(ms) } };
}

/**
 * Wraps an export so that whatever it throws becomes a WIT `adapter-error`: RetryLater (and
 * transient HTTP answers) `retry-later` with their `afterMs` / `retryAfterMs`, Permanent
 * `permanent`, and any other exception is logged with its stack and becomes `permanent`. A WIT
 * error thrown as is passes through (a 0.1-style `{tag: 'retry-later', val: 'reason'}` gets no
 * delay).
 */
export function guard(name, fn) {
  return (...args) => {
    let result;
    try {
      result = fn(...args);
    } catch (e) {
      throw adapterError(name, e);
    }
    // An async export (one that awaits `fetch`): its rejection is converted the same way.
    if (typeof result?.then === 'function') {
      return result.then(undefined, (e) => {
        throw adapterError(name, e);
      });
    }
    return result;
  };
}

/** What `guard` throws for `e`: the WIT `adapter-error`, logging an unexpected exception. */
function adapterError(name, e) {
  if (e instanceof RetryLater) return retryLaterError(e.message, e.afterMs);
  if (e instanceof HttpStatusError && e.transient) return retryLaterError(e.message, e.retryAfterMs);
  if (e instanceof Permanent || e instanceof HttpStatusError) {
    return { tag: 'permanent', val: e.message };
  }
  if (e?.tag === 'retry-later') {
    if (typeof e.val === 'string') return retryLaterError(e.val, undefined);
    return retryLaterError(e.val?.reason ?? '', e.val?.afterMs);
  }
  if (e?.tag === 'permanent') return e;
  const message = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  const stack = String(e?.stack ?? '');
  // The first frame in the adapter's own file: its lines are the author's (see join.mjs).
  const at = stack.match(/adapter\.js:\d+:\d+/);
  const where = at ? ` (at ${at[0]})` : '';
  hostLog('error', `${name}: uncaught exception: ${message}${where}`, [['stack', stack]]);
  return { tag: 'permanent', val: `${name}: uncaught exception: ${message}${where}` };
}
