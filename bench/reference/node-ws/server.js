// A naive Node.js `ws` server in the broadcast style of WebSocket tutorials:
// every tick is stringified once and sent with
// `wss.clients.forEach(c => c.send(msg))` to each client subscribed to its
// symbol. Same synthetic universe (S0..S{n-1}), per-symbol rates and Poisson
// arrivals (exponential gaps on an absolute schedule) as tickwire's feed.
//
// Usage: node server.js --listen 127.0.0.1:0 --synthetic 100 --rate 100 [--seed 1]
'use strict';
const http = require('http');
const { WebSocketServer, WebSocket } = require('ws');

function flag(name, dflt) {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}
const [host, port] = flag('--listen', '127.0.0.1:8092').split(':');
const count = parseInt(flag('--synthetic', '100'), 10);
const rate = parseFloat(flag('--rate', '100'));
let seed = parseInt(flag('--seed', '1'), 10) >>> 0 || 1;

// xorshift32: a seeded uniform source for the exponential gaps.
function random() {
  seed ^= seed << 13; seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5; seed >>>= 0;
  return seed / 4294967296;
}
const expGap = (mean) => -Math.log(1 - random()) * mean;

// Instruments as in tickwire's Universe::synthetic: 2 price decimals, tick 1,
// spread 2 ticks, start price 100.00 + (i % 900).
const symbols = [];
for (let i = 0; i < count; i++) {
  symbols.push({
    name: 'S' + i, seq: 0, px: 10000 + (i % 900) * 100,
    next: expGap(1 / rate), // seconds since start
  });
}
const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);
const fixed2 = (u) => (u / 100).toFixed(2);

const server = http.createServer((req, res) => { res.writeHead(404); res.end(); });
const wss = new WebSocketServer({ server, path: '/ws' });
wss.on('connection', (ws) => {
  ws.subs = new Set();
  ws.on('message', (data) => {
    let m;
    try { m = JSON.parse(data); } catch { return; }
    if (m.op === 'subscribe' && Array.isArray(m.symbols)) {
      for (const s of m.symbols) {
        if (s === '*') symbols.forEach((x) => ws.subs.add(x.name));
        else ws.subs.add(s);
      }
    }
  });
});

const start = performance.now();
function pump() {
  const t = (performance.now() - start) / 1000;
  let nextDue = Infinity;
  for (const s of symbols) {
    while (s.next <= t) {
      s.seq += 1;
      s.px = Math.max(1, s.px + Math.round((random() - 0.5) * 4));
      const msg = JSON.stringify({
        type: 'tick', sym: s.name, seq: s.seq, ts: nowUs(),
        px: Number(fixed2(s.px)), qty: 1 + Math.floor(random() * 100),
        bid: Number(fixed2(s.px - 1)), ask: Number(fixed2(s.px + 1)),
      });
      wss.clients.forEach((c) => {
        if (c.readyState === WebSocket.OPEN && c.subs.has(s.name)) c.send(msg);
      });
      s.next += expGap(1 / rate);
    }
    if (s.next < nextDue) nextDue = s.next;
  }
  const waitMs = Math.max(0, (nextDue - (performance.now() - start) / 1000) * 1000);
  if (waitMs < 1) setImmediate(pump); else setTimeout(pump, waitMs);
}

server.listen(parseInt(port, 10), host, () => {
  const a = server.address();
  console.log(`node-ws listening on http://${a.address}:${a.port}`);
  pump();
});
process.on('SIGTERM', () => process.exit(0));
