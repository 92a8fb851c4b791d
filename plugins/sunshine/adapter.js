// sunshine: a dolphin-bridge adapter for Zendesk Sunshine Conversations (API v2), in JavaScript.
// Setup and config keys are in the README beside this file. API shapes are those of the Sunshine
// Conversations OpenAPI spec (zendesk/sunshine-conversations-api-spec, openapi.yaml).
//
// 3Dolphins -> Sunshine (on-incoming), per ticket:
// 1. the user of the contact: KV `user:{contactId}`, else `POST /v2/apps/{appId}/users` with
//    `externalId` = `3dolphins-{contactId}`; a 409 (`conflict`: it exists) reads it with
//    `GET /v2/apps/{appId}/users/{externalId}`;
// 2. the ticket's conversation: KV `ticket:{ticketNumber}`, else (on a retry, first among the
//    user's conversations `GET .../conversations?filter[userId]=` whose `metadata.dolphinTicket`
//    is the ticket, so a lost answer never makes a second one) `POST .../conversations`
//    `{type: personal, participants: [{userId}], metadata}`; KV `conversation:{id}` maps back;
// 3. the message, posted as the user: `POST .../conversations/{id}/messages` with
//    `author: {type: user, userId}`, content text / image / file (video, audio) / location, and
//    `metadata.dolphinDeliveryId`. A retried delivery (attempt > 1) first looks for that id
//    among the conversation's latest messages (`GET .../messages`, the newest page of 100).
//
// Sunshine -> 3Dolphins (on-vendor-webhook): v2 webhook `{app, webhook, events: [...]}`, whose
// `X-API-Key` the host verifies. Per event of a conversation this adapter made:
// - `conversation:message` by `author.type: business` (not a system `activity`): an Outgoing
//   text, image or file (mediaUrl), or a location `lat,long`; the user's own messages (ours) are
//   ignored;
// - `switchboard:passControl` / `switchboard:releaseControl` with reason `ticketClosed`
//   (`payload.reason`, or `payload.metadata.reason`): a Close command.
// Each event is keyed by Sunshine's own event id (`events[].id`) as its dedupe key, so an event
// that Sunshine sends again (a retried webhook) reaches 3Dolphins once.
//
// Errors: a 429 (or 503) from Sunshine is retried after its `Retry-After` (seconds), passed to the
// host as `after-ms` by the SDK; other 408/429/5xx answers, timeouts and connection failures are
// retried on the host's schedule; other 4xx are permanent.

import { Permanent, basicAuth, config, guard, http, kv, logger, webhook } from '../../plugin-sdk/js/sdk.js';

/** The Sunshine API's default origin; `base_url` overrides it (e.g. `https://{subdomain}.zendesk.com/sc`). */
const DEFAULT_BASE_URL = 'https://api.smooch.io';

/** Which message types the Sunshine content `file` carries (it has no audio/video type). */
const FILE_TYPES = new Set(['file', 'video', 'audio']);

/** The tenant's Sunshine settings. */
function settings() {
  const base = config.getOr('base_url', DEFAULT_BASE_URL).replace(/\/+$/, '');
  const appId = config.require('app_id');
  return {
    app: `${base}/v2/apps/${encodeURIComponent(appId)}`,
    appId,
    headers: { authorization: basicAuth(config.require('key_id'), config.require('key_secret')) },
  };
}

/** The Sunshine user id of the event's contact, created when missing. */
function ensureUser(api, event) {
  const key = `user:${event.contactId}`;
  const known = kv.getJson(key);
  if (typeof known?.userId === 'string') return known.userId;
  const externalId = `3dolphins-${event.contactId}`;
  const [givenName, ...rest] = event.customerName.trim().split(/\s+/);
  const profile = givenName ? { givenName, ...(rest.length > 0 ? { surname: rest.join(' ') } : {}) } : {};
  const created = http.postJson(
    `${api.app}/users`,
    { externalId, profile, metadata: { channel: event.channel, accountId: event.accountId } },
    { headers: api.headers, what: 'create user', accept: [409] },
  );
  const user =
    created.status === 409
      ? http.getJson(`${api.app}/users/${encodeURIComponent(externalId)}`, { headers: api.headers, what: 'get user' }).body?.user
      : created.body?.user;
  if (typeof user?.id !== 'string') throw new Permanent('Sunshine answered a user without an id');
  kv.setJson(key, { userId: user.id });
  return user.id;
}

/** The conversation this adapter made earlier for `ticketNumber`, looked up at Sunshine. */
function findConversation(api, userId, ticketNumber) {
  const answer = http.getJson(`${api.app}/conversations?filter[userId]=${encodeURIComponent(userId)}`, {
    headers: api.headers,
    what: 'list conversations',
  });
  const conversations = answer.body?.conversations ?? [];
  return conversations.find((c) => c?.metadata?.dolphinTicket === ticketNumber)?.id;
}

/** `{conversationId, userId}` of the event's ticket, created when missing. */
function ensureConversation(api, ctx, event) {
  const key = `ticket:${event.ticketNumber}`;
  const known = kv.getJson(key);
  if (typeof known?.conversationId === 'string') return known;
  const userId = ensureUser(api, event);
  let conversationId = ctx.attempt > 1 ? findConversation(api, userId, event.ticketNumber) : undefined;
  if (conversationId === undefined) {
    const created = http.postJson(
      `${api.app}/conversations`,
      {
        type: 'personal',
        participants: [{ userId }],
        displayName: event.customerName || event.accountId,
        metadata: { dolphinTicket: event.ticketNumber, channel: event.channel },
      },
      { headers: api.headers, what: 'create conversation' },
    );
    conversationId = created.body?.conversation?.id;
    if (typeof conversationId !== 'string') throw new Permanent('Sunshine answered a conversation without an id');
  }
  const link = { conversationId, userId };
  kv.setJson(`conversation:${conversationId}`, { ticketNumber: event.ticketNumber });
  kv.setJson(key, link);
  return link;
}

/** Sunshine message content for an Incoming event. */
function contentOf(event) {
  const caption = event.message ? { text: event.message } : {};
  if (event.messageType === 'image') return { type: 'image', mediaUrl: event.mediaLink, ...caption };
  if (FILE_TYPES.has(event.messageType)) return { type: 'file', mediaUrl: event.mediaLink, ...caption };
  if (event.messageType === 'location') {
    const [lat, long] = event.message.split(',').map((part) => Number(part.trim()));
    return { type: 'location', coordinates: { lat, long } };
  }
  return { type: 'text', text: event.message };
}

/** Whether the conversation's newest page of messages already holds this delivery's message. */
function alreadyPosted(api, conversationId, deliveryId) {
  const answer = http.getJson(`${api.app}/conversations/${encodeURIComponent(conversationId)}/messages`, {
    headers: api.headers,
    what: 'list messages',
  });
  return (answer.body?.messages ?? []).some((m) => m?.metadata?.dolphinDeliveryId === deliveryId);
}

export const onIncoming = guard('on-incoming', (ctx, event) => {
  const api = settings();
  const { conversationId, userId } = ensureConversation(api, ctx, event);
  if (ctx.attempt > 1 && alreadyPosted(api, conversationId, ctx.deliveryId)) {
    logger.info('sunshine: message already posted by an earlier attempt', { conversation: conversationId });
    return;
  }
  http.postJson(
    `${api.app}/conversations/${encodeURIComponent(conversationId)}/messages`,
    {
      author: { type: 'user', userId },
      content: contentOf(event),
      metadata: { dolphinDeliveryId: ctx.deliveryId, dolphinTicket: event.ticketNumber },
    },
    { headers: api.headers, what: 'post message' },
  );
});

/** The Outgoing event for a business message's content, or undefined when it has none to forward. */
function outgoingOf(ticketNumber, content) {
  const text = typeof content?.text === 'string' ? content.text : '';
  switch (content?.type) {
    case 'image':
    case 'file':
      if (typeof content.mediaUrl === 'string') return webhook.outgoing(ticketNumber, content.type, text, content.mediaUrl);
      break;
    case 'location': {
      const lat = content.coordinates?.lat;
      const long = content.coordinates?.long;
      if (typeof lat === 'number' && typeof long === 'number') return webhook.outgoing(ticketNumber, 'location', `${lat},${long}`);
      break;
    }
    default:
      break;
  }
  return text === '' ? undefined : webhook.outgoing(ticketNumber, 'text', text);
}

const CONTROL_EVENTS = new Set(['switchboard:passControl', 'switchboard:releaseControl']);

/** The bridge event for one webhook event, or a string saying why it is ignored. */
function mapEvent(event) {
  const payload = event?.payload ?? {};
  const conversationId = payload.conversation?.id;
  if (typeof conversationId !== 'string') return `${event?.type}: no conversation`;
  const ticketNumber = kv.getJson(`conversation:${conversationId}`)?.ticketNumber;
  if (typeof ticketNumber !== 'string') return `${event?.type}: conversation ${conversationId} is not one of ours`;
  if (event.type === 'conversation:message') {
    const message = payload.message ?? {};
    if (message.author?.type !== 'business') return 'a user message';
    if (message.activity !== undefined) return 'a system activity message';
    return outgoingOf(ticketNumber, message.content) ?? `a ${message.content?.type} message without text or media`;
  }
  if (CONTROL_EVENTS.has(event.type)) {
    const reason = payload.reason ?? payload.metadata?.reason;
    return reason === 'ticketClosed' ? webhook.close(ticketNumber) : `${event.type} without reason ticketClosed`;
  }
  return `event type ${event.type}`;
}

export const onVendorWebhook = guard('on-vendor-webhook', (_ctx, request) => {
  const body = webhook.parseBody(request);
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    return webhook.outcome([], webhook.json(400, { error: 'body must be a JSON object' }));
  }
  if (!Array.isArray(body.events)) {
    return webhook.outcome([], webhook.json(400, { error: '`events` must be an array' }));
  }
  const appId = config.require('app_id');
  if (body.app?.id !== undefined && body.app.id !== appId) {
    return webhook.outcome([], webhook.json(200, { status: 'ignored', reason: 'another app' }));
  }
  const events = [];
  for (const event of body.events) {
    const mapped = mapEvent(event);
    if (typeof mapped === 'string') {
      logger.debug(`sunshine webhook event ignored: ${mapped}`, { event: event?.id ?? '' });
    } else {
      events.push(webhook.keyed(mapped, typeof event.id === 'string' && event.id !== '' ? event.id : undefined));
    }
  }
  return webhook.outcome(events, webhook.json(200, { status: 'ok', events: events.length }));
});
