// gw_ws_node.js: the gateway's WebSocket behaviour seen by an independent,
// widely used client implementation, the `ws` npm package (RFC 6455 with
// strict checks of everything the server sends: masking, reserved bits,
// opcodes, UTF-8, close codes; any violation fails the connection).
// Runs against ota-gateway with tests/integration/fake_worker.
//
// Usage: node gw_ws_node.js WS_MODULE_DIR PUBLIC_URL PING_MS IDLE_MS MAX_MESSAGE
// Prints TAP lines; exits 1 if any check failed.
'use strict';
const [wsDir, url, pingMs, idleMs, maxMsg] = process.argv.slice(2);
const WebSocket = require(wsDir);
let n = 0, failed = 0;
function check(name, cond, detail) {
  n++;
  if (!cond) failed++;
  console.log(`${cond ? 'ok' : 'not ok'} ${n} - ${name}${cond ? '' : ' (' + JSON.stringify(detail) + ')'}`);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Opens a client; collects messages, pings, errors and the close.
function open(opts) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, opts);
    const st = { ws, msgs: [], pings: 0, errors: [], close: null, waiters: [] };
    ws.on('message', (data, isBinary) => {
      st.msgs.push(isBinary ? data : JSON.parse(data.toString()));
      st.waiters.splice(0).forEach((f) => f());
    });
    ws.on('ping', () => { st.pings++; });
    ws.on('error', (e) => { st.errors.push(String(e.message || e)); });
    ws.on('close', (code, reason) => {
      st.close = { code, reason: reason.toString() };
      st.waiters.splice(0).forEach((f) => f());
    });
    ws.once('open', () => resolve(st));
    ws.once('unexpected-response', (req, res) => reject(new Error('HTTP ' + res.statusCode)));
    ws.once('error', reject);
  });
}
async function until(st, pred, ms = 5000) {
  const end = Date.now() + ms;
  while (!pred() && Date.now() < end)
    await Promise.race([new Promise((r) => st.waiters.push(r)), sleep(50)]);
  return pred();
}
const OP = JSON.stringify({ type: 'operation', operation: 'check', uid: '04112233445566',
  tech: 'IsoDep', requestId: 'node-1' });

async function fullSession(st, sendOp) {
  await sendOp();
  await until(st, () => st.msgs.length >= 2);
  st.ws.send(JSON.stringify({ type: 'response', data: '9100' }));
  await until(st, () => st.msgs.length >= 3);
  st.ws.send(JSON.stringify({ type: 'response', data: 'e803000000009100' }));
  await until(st, () => st.close !== null);
  return st.msgs[st.msgs.length - 1] || {};
}

async function main() {
  // 1. A whole session; the gateway takes no extension ws offered.
  let st = await open({ perMessageDeflate: true });
  check('no extension negotiated (permessage-deflate was offered)', st.ws.extensions === '',
    st.ws.extensions);
  let r = await fullSession(st, async () => st.ws.send(OP));
  check('a session completes: result ok with the echoed requestId', r.type === 'result' &&
    r.status === 'ok' && r.balance === 1000 && r.requestId === 'node-1', r);
  check('the gateway closes with 1000 after the result, cleanly', st.close && st.close.code === 1000 &&
    st.errors.length === 0, { close: st.close, errors: st.errors });
  check('modal, then a command in lower-case hex', st.msgs[0].type === 'modal' &&
    st.msgs[1].type === 'command' && st.msgs[1].data === '905a000003eeffc000', st.msgs);

  // 2. A text message in fragments (fin: false) is one message.
  st = await open();
  r = await fullSession(st, async () => {
    // Strings: ws sends a Buffer as binary unless told otherwise.
    st.ws.send(OP.slice(0, 7), { fin: false });
    st.ws.send(OP.slice(7, 40), { fin: false });
    st.ws.send(OP.slice(40), { fin: true });
  });
  check('a fragmented operation message is reassembled', r.status === 'ok' &&
    st.msgs[0].type === 'modal', st.msgs);

  // 3. Ping/pong both ways; a client that answers pings is not idle.
  st = await open();
  const pong = new Promise((res) => st.ws.once('pong', (d) => res(d.toString())));
  st.ws.ping('are-you-there');
  check('the gateway answers a ping with the same payload', (await pong) === 'are-you-there');
  await sleep(Number(idleMs) * 2);
  check(`the gateway pings an idle client (${st.pings} pings in ${2 * idleMs} ms)`, st.pings >= 1,
    st.pings);
  check('a client that answers pings stays connected past idle_timeout', st.close === null &&
    st.ws.readyState === WebSocket.OPEN, st.close);
  r = await fullSession(st, async () => st.ws.send(OP));
  check('... and its session still works', r.status === 'ok', r);

  // 4. Close handshake started by the client: the code is echoed.
  for (const code of [1000, 4000]) {
    st = await open();
    st.ws.close(code, 'bye');
    await until(st, () => st.close !== null);
    check(`client close ${code}: the gateway answers with ${code}`, st.close && st.close.code === code &&
      st.errors.length === 0, { close: st.close, errors: st.errors });
  }

  // 5. Message size: max_message is accepted, one byte more closes with 1009.
  const max = Number(maxMsg);
  const atMax = '{"type":"nothing","pad":"' + 'x'.repeat(max - 27) + '"}';
  st = await open();
  st.ws.send(atMax);
  await until(st, () => st.close !== null);
  r = st.msgs[0] || {};
  check(`a message of exactly ${max} bytes is read (bad-request result, close 1000)`,
    atMax.length === max && r.error === 'bad-request' && st.close.code === 1000,
    { len: atMax.length, r, close: st.close });
  st = await open();
  st.ws.send(atMax + ' ');
  await until(st, () => st.close !== null);
  check(`a message of ${max + 1} bytes closes with 1009`, st.close && st.close.code === 1009, st.close);
  st = await open();
  st.ws.send(atMax.slice(0, 3000), { fin: false });
  st.ws.send(atMax.slice(3000) + '  ', { fin: true });
  await until(st, () => st.close !== null);
  check(`fragments adding up to ${max + 2} bytes close with 1009`, st.close && st.close.code === 1009,
    st.close);

  // 6. Binary frames and invalid UTF-8.
  st = await open();
  st.ws.send(Buffer.from([1, 2, 3]), { binary: true });
  await until(st, () => st.close !== null);
  check('a binary message closes with 1003', st.close && st.close.code === 1003, st.close);
  st = await open();
  st.ws.send(Buffer.from([0x7b, 0x22, 0xc0, 0xaf, 0x22, 0x7d]), { binary: false });
  await until(st, () => st.close !== null);
  check('a text message with invalid UTF-8 closes with 1007', st.close && st.close.code === 1007,
    st.close);

  // 7. A bad request and an unknown path, as ws sees them.
  st = await open();
  st.ws.send('{"type":"response","data":"9100"}');
  await until(st, () => st.close !== null);
  check('a response before the operation: result bad-request, close 1000',
    (st.msgs[0] || {}).error === 'bad-request' && st.close.code === 1000, st);
  let status = null;
  try {
    await new Promise((resolve, reject) => {
      const ws = new WebSocket(url.replace('/v1/session', '/nope'));
      ws.on('unexpected-response', (req, res) => { status = res.statusCode; ws.terminate(); resolve(); });
      ws.on('error', () => resolve());
      ws.on('open', () => reject(new Error('opened')));
    });
  } catch (e) { status = String(e); }
  check('an unknown path is answered 404', status === 404, status);
  console.log(`# ${n} checks, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}
main().catch((e) => { console.log(`not ok - ${e.stack || e}`); process.exit(1); });
