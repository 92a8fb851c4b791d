// echo-js: the `echo` adapter written in JavaScript (componentize-js), showing that adapters can
// be written in any language that compiles to a component. It uses the bare bindings
// (`dolphin:bridge/...@0.2.0` imports), and the JavaScript SDK (`plugin-sdk/js/sdk.js`, joined
// with this file by build.mjs) only for the webhook signature and the `Retry-After` parser.
//
// on-incoming: when config `url` is set, POSTs the Incoming event as 3Dolphins JSON plus
// `deliveryId`, `attempt`, `tenant` and `language: "javascript"` to it through the host; 408,
// 429 and 5xx answers, timeouts and connection failures are retry-later (the vendor's wait, read
// by the SDK's `retryAfterMs` as the Rust echo reads it, goes to the host as `after-ms`), other
// 4xx permanent.
// Without `url` it only logs the event.
//
// on-vendor-webhook (any path, body JSON):
// - `{"ticketNumber", "message"}` becomes one text Outgoing event, `{"ticketNumber", "event":
//   "Close"}` a Close command; anything else is answered 400 `{"error": "..."}` with no events.
//   Success is answered 200 `{"status": "ok"}`.
// - either may carry `"id": "..."`, the vendor's id of it: a non-empty string becomes the event's
//   dedupe key as it is (the host forwards the tenant's event of one key once); without `id`, or
//   with `null` or `""`, the event has no dedupe key; any other `id` is answered 400.
// - config `signing_secret` (optional, a secret): when set, a webhook must carry the header
//   `x-echo-signature: sha256=<lowercase hex HMAC-SHA256(signing_secret, raw body)>` (the
//   `sha256=` prefix is required, the hex may be in either case, spaces around the value are
//   ignored), checked with the host's crypto interface (hmac and constant-time-equal, through the
//   SDK's `hostCrypto.verifyHmacSha256Hex`) before the body is read; a missing or wrong signature
//   is answered 401 `{"error": "bad signature"}` with no events (and logged at warn, without the
//   secret). Without `signing_secret` the header is not looked at.
// - config `report_runtime` = `"true"`: the success answer is
//   `{"status": "ok", "now": Date.now(), "random": Math.random()}` instead, showing that the
//   component reads the host's wall clock and random source at run time (both are read in the
//   call, never at the top level, which componentize-js runs at build time).

import { get } from 'dolphin:bridge/config@0.2.0';
import { send } from 'dolphin:bridge/http@0.2.0';
import { log } from 'dolphin:bridge/log@0.2.0';
import { hostCrypto, isTransientStatus, retryAfterMs } from '../../plugin-sdk/js/sdk.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const SIGNATURE_HEADER = 'x-echo-signature';
const SIGNATURE_PREFIX = 'sha256=';

function response(status, value) {
  return { status, headers: [['content-type', 'application/json']], body: encoder.encode(JSON.stringify(value)) };
}

/** The WIT `adapter-error.retry-later`; `afterMs` in milliseconds (a u64, so a BigInt) or undefined. */
function retryLater(reason, afterMs) {
  return { tag: 'retry-later', val: { reason, afterMs: afterMs === undefined ? undefined : BigInt(afterMs) } };
}

function incomingJson(ctx, event) {
  const body = {
    ticketNumber: event.ticketNumber,
    channel: event.channel,
    accountId: event.accountId,
    contactId: event.contactId,
    messageType: event.messageType,
    message: event.message,
    mediaLink: event.mediaLink,
    customerName: event.customerName,
    createdDate: event.createdDate,
    owner: event.owner,
    deliveryId: ctx.deliveryId,
    attempt: ctx.attempt,
    tenant: ctx.tenant,
    language: 'javascript',
  };
  for (const [name, value] of event.extra) body[name] = JSON.parse(value);
  return body;
}

export function onIncoming(ctx, event) {
  const url = get('url');
  if (url === undefined) {
    log('info', 'echo-js: incoming event', [['ticket', event.ticketNumber]]);
    return;
  }
  let answer;
  try {
    answer = send({
      method: 'POST',
      url,
      headers: [['content-type', 'application/json']],
      body: encoder.encode(JSON.stringify(incomingJson(ctx, event))),
    });
  } catch (e) {
    const error = e.payload ?? e;
    const reason = `POST vendor: ${error.tag} ${error.val ?? ''}`;
    if (error.tag === 'timeout' || error.tag === 'connection') throw retryLater(reason);
    throw { tag: 'permanent', val: reason };
  }
  if (isTransientStatus(answer.status)) {
    throw retryLater(`POST vendor answered ${answer.status}`, retryAfterMs(answer.headers));
  }
  if (answer.status >= 300) {
    throw { tag: 'permanent', val: `POST vendor answered ${answer.status}` };
  }
}

/**
 * Undefined when the request carries `x-echo-signature: sha256=<hex HMAC-SHA256(secret, body)>`,
 * else `'missing'` or `'wrong'`.
 */
function signatureProblem(request, secret) {
  const given = request.headers.find(([name]) => name.toLowerCase() === SIGNATURE_HEADER)?.[1]?.trim();
  if (given === undefined) return 'missing';
  if (!given.startsWith(SIGNATURE_PREFIX)) return 'wrong';
  return hostCrypto.verifyHmacSha256Hex(secret, request.body, given.slice(SIGNATURE_PREFIX.length)) ? undefined : 'wrong';
}

export function onVendorWebhook(ctx, request) {
  const secret = get('signing_secret');
  const problem = secret === undefined ? undefined : signatureProblem(request, secret);
  if (problem !== undefined) {
    log('warn', 'echo-js: webhook refused: bad signature', [['signature', problem]]);
    return { events: [], response: response(401, { error: 'bad signature' }) };
  }
  let body;
  try {
    body = JSON.parse(decoder.decode(request.body));
  } catch {
    return { events: [], response: response(400, { error: 'body is not JSON' }) };
  }
  const ticketNumber = body?.ticketNumber;
  if (typeof ticketNumber !== 'string' || ticketNumber === '') {
    return { events: [], response: response(400, { error: '`ticketNumber` is required' }) };
  }
  const id = body.id ?? undefined;
  if (id !== undefined && typeof id !== 'string') {
    return { events: [], response: response(400, { error: '`id` must be a string' }) };
  }
  let event;
  if (String(body.event ?? '').toLowerCase() === 'close') {
    event = { tag: 'command', val: { ticketNumber, command: 'close', channel: undefined } };
  } else if (typeof body.message === 'string') {
    event = {
      tag: 'outgoing',
      val: { ticketNumber, messageType: 'text', message: body.message, mediaLink: '', channel: undefined, customerName: undefined, extra: [] },
    };
  } else {
    return { events: [], response: response(400, { error: 'expected message or event' }) };
  }
  const dedupeKey = id === '' ? undefined : id;
  const answer = get('report_runtime') === 'true' ? { status: 'ok', now: Date.now(), random: Math.random() } : { status: 'ok' };
  return { events: [{ event, dedupeKey }], response: response(200, answer) };
}
