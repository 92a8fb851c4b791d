// dolphin-bridge JavaScript adapter SDK: typed helpers over the WIT imports of
// `dolphin:bridge@0.1.0` (config, http, kv, log) and an exception guard for the two exports.
//
// An adapter imports what it needs from this file; its build concatenates the two into the one
// source componentize-js takes (see plugins/sunshine/build.mjs), so every top-level name here is
// also a top-level name of the adapter: adapters must not declare the same names.

import { get as configGet } from 'dolphin:bridge/config@0.1.0';
import { send as httpSend } from 'dolphin:bridge/http@0.1.0';
import { get as kvGet, set as kvSet, delete as kvDelete } from 'dolphin:bridge/kv@0.1.0';
import { log as hostLog } from 'dolphin:bridge/log@0.1.0';

const sdkEncoder = new TextEncoder();
const sdkDecoder = new TextDecoder();

/** A transient failure: the host retries the delivery later (WIT `adapter-error.retry-later`). */
export class RetryLater extends Error {
  constructor(message) {
    super(message);
    this.name = 'RetryLater';
  }
}

/** A failure that will never succeed as is: no retry (WIT `adapter-error.permanent`). */
export class Permanent extends Error {
  constructor(message) {
    super(message);
    this.name = 'Permanent';
  }
}

/** An HTTP answer the caller did not accept; `status` and the parsed `body` (or undefined). */
export class HttpStatusError extends Error {
  constructor(message, status, body, transient) {
    super(message);
    this.name = 'HttpStatusError';
    this.status = status;
    this.body = body;
    this.transient = transient;
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
 * answers throw: 408/429/5xx, timeouts and connection failures RetryLater, anything else
 * (4xx, a URL the tenant may not call, a host limit) Permanent. `what` names the call in errors.
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
      throw new HttpStatusError(`${what} answered ${answer.status}${describeBody(parsed)}`, answer.status, parsed, transient);
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

/** Builders for what `on-vendor-webhook` returns. */
export const webhook = {
  /** A JSON HTTP response for the vendor. */
  json(status, value) {
    return { status, headers: [['content-type', 'application/json']], body: sdkEncoder.encode(JSON.stringify(value)) };
  },
  /** A webhook outcome: `events` for 3Dolphins and the response. */
  outcome(events, response) {
    return { events, response };
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

/**
 * Wraps an export so that whatever it throws becomes a WIT `adapter-error`: RetryLater (and
 * transient HTTP answers) `retry-later`, Permanent `permanent`, and any other exception is
 * logged with its stack and becomes `permanent`.
 */
export function guard(name, fn) {
  return (...args) => {
    try {
      return fn(...args);
    } catch (e) {
      if (e instanceof RetryLater || (e instanceof HttpStatusError && e.transient)) {
        throw { tag: 'retry-later', val: e.message };
      }
      if (e instanceof Permanent || e instanceof HttpStatusError) {
        throw { tag: 'permanent', val: e.message };
      }
      if (e?.tag === 'retry-later' || e?.tag === 'permanent') throw e;
      const message = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
      hostLog('error', `${name}: uncaught exception: ${message}`, [['stack', String(e?.stack ?? '')]]);
      throw { tag: 'permanent', val: `${name}: uncaught exception: ${message}` };
    }
  };
}
