// A dolphin-bridge adapter (started from `dolphin-bridge plugin new --lang js`).
//
// on-incoming: POSTs the customer's message as JSON to config `url`, with secret `token` as
// `authorization: Bearer ...` and the delivery id as `idempotency-key` (the same on every retry,
// so the vendor can drop a repeat). 2xx is delivered; 408, 429, 5xx, timeouts and connection
// failures are retried later; other answers are permanent (dead letter).
//
// on-vendor-webhook (body JSON):
// - `{"ticketNumber": "...", "text": "..."}`: the agent's reply, one Outgoing text event;
// - `{"ticketNumber": "...", "closed": true}`: a Close command;
// - anything else is answered 400 `{"error": "..."}` with no events.

import { config, guard, http, webhook } from './sdk.js';

export const onIncoming = guard('on-incoming', (ctx, event) => {
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
  http.postJson(url, body, {
    headers: { authorization: `Bearer ${token}`, 'idempotency-key': ctx.deliveryId },
    what: 'post message',
  });
});

export const onVendorWebhook = guard('on-vendor-webhook', (ctx, request) => {
  const body = webhook.parseBody(request);
  const ticket = body?.ticketNumber;
  if (typeof ticket !== 'string' || ticket === '') return refuse('`ticketNumber` is required');
  let event;
  if (body.closed === true) event = webhook.close(ticket);
  else if (typeof body.text === 'string') event = webhook.outgoing(ticket, 'text', body.text);
  else return refuse('expected `text` or `closed: true`');
  return webhook.outcome([event], webhook.json(200, { status: 'ok' }));
});

function refuse(message) {
  return webhook.outcome([], webhook.json(400, { error: message }));
}
