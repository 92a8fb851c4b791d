// echo-js: the `echo` adapter written in JavaScript (componentize-js), showing that adapters can
// be written in any language that compiles to a component.
//
// on-incoming: when config `url` is set, POSTs the Incoming event as 3Dolphins JSON plus
// `deliveryId`, `attempt`, `tenant` and `language: "javascript"` to it through the host; 408,
// 429 and 5xx answers, timeouts and connection failures are retry-later, other 4xx permanent.
// on-vendor-webhook: `{"ticketNumber", "message"}` becomes one text Outgoing event,
// `{"ticketNumber", "event": "Close"}` a Close command; anything else is answered 400.

import { get } from 'dolphin:bridge/config@0.1.0';
import { send } from 'dolphin:bridge/http@0.1.0';
import { log } from 'dolphin:bridge/log@0.1.0';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function response(status, value) {
  return { status, headers: [['content-type', 'application/json']], body: encoder.encode(JSON.stringify(value)) };
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
    const transient = error.tag === 'timeout' || error.tag === 'connection';
    throw { tag: transient ? 'retry-later' : 'permanent', val: `POST vendor: ${error.tag} ${error.val ?? ''}` };
  }
  if (answer.status === 408 || answer.status === 429 || answer.status >= 500) {
    throw { tag: 'retry-later', val: `POST vendor answered ${answer.status}` };
  }
  if (answer.status >= 300) {
    throw { tag: 'permanent', val: `POST vendor answered ${answer.status}` };
  }
}

export function onVendorWebhook(ctx, request) {
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
  return { events: [event], response: response(200, { status: 'ok' }) };
}
