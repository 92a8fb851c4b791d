// standard-http-js: an adapter that reaches its vendor with `fetch()`, the standard HTTP client
// of JavaScript, instead of the SDK's `http` helpers. componentize-js implements `fetch` on
// wasi:http, which the bridge serves with the same policy as `http.send`: the tenant's allowed
// hosts and address ranges, the call's request budget, the timeout and the response size.
//
// on-incoming: POSTs `{"ticketNumber", "message", "deliveryId"}` as JSON to config `url`, with
// secret `token` as `authorization: Bearer ...`. 2xx is delivered; 408, 429 and 5xx are retried
// later; other statuses are permanent. A `fetch` that rejects (refused by the bridge's policy, a
// connection failure, a timeout) is retried later with its error: wasi:http's error codes do not
// tell a refusal from an outage (the bridge logs a refusal's reason).
//
// on-vendor-webhook: `{"ticketNumber", "text"}` becomes one text Outgoing event, answered 200
// `{"status":"ok"}`; anything else is answered 400 `{"error": "..."}` with no events.
//
// An export may be `async`: componentize-js runs the event loop until its promise settles.

import { get } from 'dolphin:bridge/config@0.2.0';
import { Permanent, RetryLater, guard, isTransientStatus } from '../../plugin-sdk/js/sdk.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function required(key) {
  const value = get(key);
  if (value === undefined) throw new Permanent(`adapter config key \`${key}\` is not set`);
  return value;
}

// `guard` turns what the async function throws (or its promise rejects with) into the WIT error.
export const onIncoming = guard('on-incoming', async (ctx, event) => {
  const url = required('url');
  const token = required('token');
  let response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ ticketNumber: event.ticketNumber, message: event.message, deliveryId: ctx.deliveryId }),
    });
  } catch (error) {
    throw new RetryLater(`post message: ${error}`);
  }
  const status = response.status;
  if (status >= 200 && status < 300) return;
  if (isTransientStatus(status)) throw new RetryLater(`post message: vendor answered ${status}`);
  throw new Permanent(`post message: vendor answered ${status}`);
});

function answer(status, value) {
  return { status, headers: [['content-type', 'application/json']], body: encoder.encode(JSON.stringify(value)) };
}

export function onVendorWebhook(ctx, request) {
  let body;
  try {
    body = JSON.parse(decoder.decode(request.body));
  } catch {
    return { events: [], response: answer(400, { error: 'the body is not JSON' }) };
  }
  const ticket = body?.ticketNumber;
  if (typeof ticket !== 'string' || ticket === '' || typeof body.text !== 'string') {
    return { events: [], response: answer(400, { error: 'expected `ticketNumber` and `text`' }) };
  }
  const event = {
    tag: 'outgoing',
    val: { ticketNumber: ticket, messageType: 'text', message: body.text, mediaLink: '', channel: undefined, customerName: undefined, extra: [] },
  };
  return { events: [{ event, dedupeKey: undefined }], response: answer(200, { status: 'ok' }) };
}
