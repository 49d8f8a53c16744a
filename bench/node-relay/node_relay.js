'use strict';
// A minimal signaling relay on Node and ws, the comparison point for Parley's numbers.
//
// Same protocol subset and limits as ../baseline_relay.py: `welcome` with the peers already in the room,
// `peer-joined`, `peer-left`, offer/answer/candidate relayed to `to` with `from` added, ping/pong, and
// Parley's default per-connection limit (20 frames/s, burst 100). Any `?ticket=` is accepted; the room comes
// from the path.
//
//     node bench/node-relay/node_relay.js --port 8002

const { randomUUID } = require('node:crypto');
const { parseArgs } = require('node:util');
const { WebSocket, WebSocketServer } = require('ws');

const PATH = /^\/ws\/rooms\/([-a-zA-Z0-9_]+)\/$/;
const MAX_FRAME = 64 * 1024;
const CLOSE_UNAUTHORIZED = 4401;
const CLOSE_NOT_FOUND = 4404;

const { values: options } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '8002' },
    rate: { type: 'string', default: '20' },
    burst: { type: 'string', default: '100' },
  },
});
const RATE = Number(options.rate);
const BURST = Number(options.burst);

// Token bucket that refuses instead of waiting, like the server-side limit it stands in for.
class RateLimit {
  constructor() {
    this.tokens = BURST;
    this.stamp = performance.now();
  }

  allow() {
    const now = performance.now();
    this.tokens = Math.min(BURST, this.tokens + ((now - this.stamp) / 1000) * RATE);
    this.stamp = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

const rooms = new Map(); // slug -> { callId, peers: Map<peerId, peer> }
let nextCallId = 1;

function describe(peer) {
  return { peer_id: peer.id, user: { display_name: peer.id.slice(0, 8) }, polite: peer.polite };
}

function sendError(peer, code, detail) {
  peer.ws.send(JSON.stringify({ type: 'error', code, detail }));
}

function broadcast(room, sender, event) {
  const text = JSON.stringify(event);
  for (const peer of room.peers.values()) {
    if (peer !== sender && peer.ws.readyState === WebSocket.OPEN) peer.ws.send(text);
  }
}

function relay(room, me, message) {
  const bodyOk = message.type === 'candidate'
    ? 'candidate' in message && typeof message.candidate === 'object' && !Array.isArray(message.candidate)
    : typeof message.sdp === 'string';
  if (typeof message.to !== 'string' || !bodyOk) {
    sendError(me, 'bad-message', "relayed frames need 'to' and 'sdp' or 'candidate'");
    return;
  }
  const target = room.peers.get(message.to);
  if (target === undefined || target === me) {
    sendError(me, 'unknown-peer', 'no such peer in this call');
    return;
  }
  if (target.ws.readyState !== WebSocket.OPEN) {
    sendError(me, 'undeliverable', 'the peer has gone');
    return;
  }
  message.from = me.id;
  target.ws.send(JSON.stringify(message));
}

function onFrame(room, me, data) {
  if (!me.limit.allow()) return sendError(me, 'rate-limited', 'slow down');
  if (data.length > MAX_FRAME) return sendError(me, 'too-large', `frames are limited to ${MAX_FRAME} bytes`);
  let message;
  try {
    message = JSON.parse(data.toString('utf8'));
  } catch {
    return sendError(me, 'bad-json', 'frame is not JSON');
  }
  const kind = message !== null && typeof message === 'object' ? message.type : undefined;
  if (kind === 'ping') me.ws.send('{"type": "pong"}');
  else if (kind === 'offer' || kind === 'answer' || kind === 'candidate') relay(room, me, message);
  else if (typeof kind === 'string') sendError(me, 'unknown-type', `unknown type '${kind}'`);
  else sendError(me, 'bad-message', 'frame must be an object with a type');
}

const server = new WebSocketServer({ host: options.host, port: Number(options.port), maxPayload: 1024 * 1024 });

server.on('connection', (ws, request) => {
  const url = new URL(request.url, 'http://relay');
  const match = PATH.exec(url.pathname);
  if (match === null) return ws.close(CLOSE_NOT_FOUND);
  if (!url.searchParams.get('ticket')) return ws.close(CLOSE_UNAUTHORIZED);

  const slug = match[1];
  let room = rooms.get(slug);
  if (room === undefined) {
    room = { callId: nextCallId++, peers: new Map() };
    rooms.set(slug, room);
  }
  const me = { id: randomUUID(), ws, polite: room.peers.size > 0, limit: new RateLimit() };
  const others = [...room.peers.values()];
  room.peers.set(me.id, me);
  ws.send(JSON.stringify({
    type: 'welcome', peer_id: me.id, call_id: room.callId, room: { slug, name: slug },
    peers: others.map(describe), ice_servers: [],
  }));
  broadcast(room, me, { type: 'peer-joined', peer: describe(me) });

  ws.on('message', (data) => onFrame(room, me, data));
  ws.on('close', () => {
    room.peers.delete(me.id);
    if (room.peers.size > 0) broadcast(room, me, { type: 'peer-left', peer_id: me.id, reason: 'left' });
    else rooms.delete(slug);
  });
});

server.on('listening', () => console.log(`node relay listening on ws://${options.host}:${options.port}`));

function shutdown() {
  for (const client of server.clients) client.close(1001);
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref(); // clients that never answer the close
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
