// Types of the dolphin-bridge JavaScript SDK (`sdk.js`) and of the records of the WIT world
// `dolphin:bridge/adapter@0.2.0` an adapter's exports receive and return. An adapter with
// `// @ts-check` at its top is checked against them by its build (`tsc`), so a misspelt helper or
// field fails the build instead of a customer's message.

/** A header list as the WIT carries it: `[name, value]` pairs. */
export type HeaderPairs = [string, string][];

/** The WIT `message-type`. */
export type MessageType = 'text' | 'image' | 'video' | 'audio' | 'file' | 'location';

/** What every call of an export knows of itself. */
export interface CallContext {
  tenant: string;
  /** The same on every retry of one delivery: an idempotency key for the vendor. */
  deliveryId: string;
  attempt: number;
}

/** A customer's message from 3Dolphins (the contract's Incoming event). */
export interface IncomingEvent {
  ticketNumber: string;
  channel: string;
  accountId: string;
  contactId: string;
  messageType: MessageType;
  message: string;
  mediaLink: string;
  customerName: string;
  createdDate: string;
  owner: string;
  groupId: string | undefined;
  language: string | undefined;
  /** Fields the contract does not name: `[name, JSON-encoded value]`. */
  extra: [string, string][];
}

/** A vendor's webhook request as the bridge received it (its token, if any, removed). */
export interface WebhookRequest {
  method: string;
  path: string;
  query: string;
  headers: HeaderPairs;
  body: Uint8Array;
}

/** The HTTP answer to a vendor's webhook. */
export interface WebhookResponse {
  status: number;
  headers: HeaderPairs;
  body: Uint8Array;
}

/** An Outgoing event or a Close command for 3Dolphins. */
export type BridgeEvent =
  | {
      tag: 'outgoing';
      val: {
        ticketNumber: string;
        messageType: MessageType;
        message: string;
        mediaLink: string;
        channel: string | undefined;
        customerName: string | undefined;
        extra: [string, string][];
      };
    }
  | { tag: 'command'; val: { ticketNumber: string; command: 'close'; channel: string | undefined } };

/** A bridge event with the vendor's id for it, if any. */
export interface WebhookEvent {
  event: BridgeEvent;
  dedupeKey: string | undefined;
}

/** What `on-vendor-webhook` returns. */
export interface WebhookOutcome {
  events: WebhookEvent[];
  response: WebhookResponse;
}

/** A transient failure: the delivery is retried later (after `afterMs`, when given). */
export class RetryLater extends Error {
  constructor(message: string, options?: { afterMs?: number | bigint });
  readonly afterMs: number | bigint | undefined;
}

/** A failure that will never succeed as is: no retry. */
export class Permanent extends Error {
  constructor(message: string);
}

/** An HTTP answer the caller did not accept. */
export class HttpStatusError extends Error {
  constructor(
    message: string,
    status: number,
    body: unknown,
    transient: boolean,
    headers?: HeaderPairs,
    retryAfterMs?: number,
  );
  readonly status: number;
  readonly body: unknown;
  readonly transient: boolean;
  readonly headers: HeaderPairs;
  readonly retryAfterMs: number | undefined;
}

type LogFields = Record<string, unknown>;

/** Structured logging into the host's log. */
export const logger: {
  trace(message: string, fields?: LogFields): void;
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
};

/** The tenant's `[tenants.config]` and `[tenants.secrets]` values. */
export const config: {
  get(key: string): string | undefined;
  getOr(key: string, fallback: string): string;
  /** A missing or blank key is a Permanent error naming it. */
  require(key: string): string;
};

/** Whether an HTTP status is worth retrying: 408, 429 and 5xx. */
export function isTransientStatus(status: number): boolean;

/** The wait, in milliseconds, an answer's headers ask for (`Retry-After` and rate-limit resets). */
export function retryAfterMs(headers: HeaderPairs, nowMs?: number): number | undefined;

export interface RequestOptions {
  headers?: Record<string, string | number>;
  /** Names the call in errors. */
  what?: string;
  /** Statuses besides 2xx the caller takes as an answer. */
  accept?: number[];
}

export interface HttpAnswer {
  status: number;
  headers: HeaderPairs;
  /** The body parsed as JSON, or undefined. */
  body: any;
}

/** Requests through the host, within the tenant's allowed hosts. */
export const http: {
  request(options: RequestOptions & { method: string; url: string; body?: Uint8Array }): HttpAnswer;
  getJson(url: string, options?: RequestOptions): HttpAnswer;
  postJson(url: string, value: unknown, options?: RequestOptions): HttpAnswer;
};

/** The tenant's key-value store with JSON values. */
export const kv: {
  getJson(key: string): any;
  setJson(key: string, value: unknown): void;
  delete(key: string): void;
};

/** Lowercase hex of bytes. */
export function toHex(bytes: Uint8Array): string;

type Bytes = string | Uint8Array | ArrayBuffer | ArrayBufferView;

/** Hashes, HMAC, comparison and randomness computed by the host. */
export const hostCrypto: {
  hmac(hash: 'sha1' | 'sha256' | 'sha512', key: Bytes, message: Bytes): Uint8Array;
  hmacSha256(key: Bytes, message: Bytes): Uint8Array;
  sha256(data: Bytes): Uint8Array;
  constantTimeEqual(a: Bytes, b: Bytes): boolean;
  randomBytes(n: number): Uint8Array;
  verifyHmacSha256Hex(secret: Bytes, message: Bytes, givenHex: string | undefined): boolean;
};

/** Standard base64 of a string's UTF-8 bytes. */
export function base64(text: string): string;

/** The `authorization` header value for HTTP Basic auth. */
export function basicAuth(user: string, password: string): string;

/** Builders for what `on-vendor-webhook` returns. */
export const webhook: {
  json(status: number, value: unknown): WebhookResponse;
  outcome(events: (BridgeEvent | WebhookEvent)[], response: WebhookResponse): WebhookOutcome;
  keyed(event: BridgeEvent, dedupeKey: string | undefined): WebhookEvent;
  parseBody(request: WebhookRequest): any;
  outgoing(
    ticketNumber: string,
    messageType: MessageType,
    message: string,
    mediaLink?: string,
    extra?: Record<string, unknown>,
  ): BridgeEvent;
  close(ticketNumber: string): BridgeEvent;
};

/** The first header `name` (case-insensitive), or undefined. */
export function header(headers: HeaderPairs, name: string): string | undefined;

/** Wraps an export so that whatever it throws becomes the WIT `adapter-error`. */
export function guard<A extends unknown[], R>(name: string, fn: (...args: A) => R): (...args: A) => R;

declare global {
  /** The engine's UTF-8 encoder. */
  class TextEncoder {
    encode(input?: string): Uint8Array;
  }
  /** The engine's UTF-8 decoder. */
  class TextDecoder {
    constructor(label?: string, options?: { fatal?: boolean });
    decode(input?: ArrayBuffer | ArrayBufferView): string;
  }
  /** Web Crypto's random source (the host's WASI random). */
  const crypto: { getRandomValues<T extends ArrayBufferView>(array: T): T };

  /**
   * Standard HTTP: componentize-js's `fetch`, on wasi:http, which the bridge serves with the
   * tenant's egress policy and the call's request budget, as `http.send`. A request the bridge
   * refuses rejects with a `TypeError` (the bridge logs the reason). Use it in an `async` export.
   */
  function fetch(input: string | Request, init?: RequestInit): Promise<Response>;
  type HeadersInit = [string, string][] | Record<string, string> | Headers;
  interface RequestInit {
    method?: string;
    headers?: HeadersInit;
    body?: string | Uint8Array | ArrayBuffer | null;
  }
  class Headers {
    constructor(init?: HeadersInit);
    get(name: string): string | null;
    has(name: string): boolean;
    set(name: string, value: string): void;
    append(name: string, value: string): void;
    delete(name: string): void;
    forEach(callback: (value: string, name: string) => void): void;
  }
  class Request {
    constructor(input: string | Request, init?: RequestInit);
    readonly url: string;
    readonly method: string;
    readonly headers: Headers;
  }
  class Response {
    constructor(body?: string | Uint8Array | null, init?: { status?: number; headers?: HeadersInit });
    readonly status: number;
    readonly ok: boolean;
    readonly statusText: string;
    readonly headers: Headers;
    readonly url: string;
    text(): Promise<string>;
    json(): Promise<unknown>;
    arrayBuffer(): Promise<ArrayBuffer>;
  }
}
