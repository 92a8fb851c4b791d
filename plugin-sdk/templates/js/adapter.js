// A dolphin-bridge adapter (started from `dolphin-bridge plugin new --lang js`).
//
// on-incoming: POSTs the customer's message as JSON to config `url`, with secret `token` as
// `authorization: Bearer ...` and the delivery id as `idempotency-key` (the same on every retry,
// so the vendor can drop a repeat). 2xx is delivered; 408, 429, 5xx, timeouts and connection
// failures are retried later (after the vendor's `Retry-After` seconds on a 429 or 503); other
// answers are permanent (dead letter).
//
// on-vendor-webhook (body JSON):
// - `{"ticketNumber": "...", "text": "..."}`: the agent's reply, one Outgoing text event;
// - `{"ticketNumber": "...", "closed": true}`: a Close command;
// - `"id"` (optional): the vendor's message id, the event's dedupe key (the bridge forwards a
//   repeated id once, e.g. when the vendor sends a webhook again);
// - anything else is answered 400 `{"error": "..."}` with no events.
//
// Read the clock (`Date.now()`) and randomness only inside the exports: top-level code runs
// once, when the component is built.
//
// `// @ts-check` below makes the build check this file against the SDK's types (`sdk.d.ts`):
// a misspelt helper or field fails the build, not a customer's message.

// @ts-check
import { config, guard, http, webhook } from './sdk.js';

/** @typedef {import('./sdk.js').CallContext} CallContext */

export const onIncoming = guard('on-incoming', (/** @type {CallContext} */ ctx, /** @type {import('./sdk.js').IncomingEvent} */ event) => {
  const url = config.require('url');
  const token = config.require('token');
  const body = {
    ticketNumber: event.ticketNumber,
    channel: event.channel,
    contactId: event.contactId,
    customerName: event.customerName,
    messageType: event.messageType,
    message: event.message,
    mediaLink: event.mediaLink,
  };
  // A 429 or 503 is retried after the vendor's `Retry-After` (seconds): the SDK passes it to the
  // bridge as the retry delay. For another hint (e.g. a rate limit's reset time), pass
  // `accept: [429]` and `throw new RetryLater('why', { afterMs })`.
  http.postJson(url, body, {
    headers: { authorization: `Bearer ${token}`, 'idempotency-key': ctx.deliveryId },
    what: 'post message',
  });
});

export const onVendorWebhook = guard('on-vendor-webhook', (/** @type {CallContext} */ ctx, /** @type {import('./sdk.js').WebhookRequest} */ request) => {
  const body = webhook.parseBody(request);
  const ticket = body?.ticketNumber;
  if (typeof ticket !== 'string' || ticket === '') return refuse('`ticketNumber` is required');
  let event;
  if (body.closed === true) event = webhook.close(ticket);
  else if (typeof body.text === 'string') event = webhook.outgoing(ticket, 'text', body.text);
  else return refuse('expected `text` or `closed: true`');
  // The vendor's own id of the message: the bridge drops a repeat of it.
  const messageId = typeof body.id === 'string' ? body.id : undefined;
  return webhook.outcome([webhook.keyed(event, messageId)], webhook.json(200, { status: 'ok' }));
});

function refuse(message) {
  return webhook.outcome([], webhook.json(400, { error: message }));
}
