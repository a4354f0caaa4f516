// The client's own tests, under node's built-in runner: `node --test test/*.test.js` (npm test).
// What needs a browser (getUserMedia, RTCPeerConnection) is covered by tests/test_browser_demo.py.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

if (typeof globalThis.CustomEvent === 'undefined') { // node 18 has EventTarget but no global CustomEvent
  globalThis.CustomEvent = class CustomEvent extends Event {
    constructor(type, init = {}) { super(type, init); this.detail = init.detail ?? null; }
  };
}

const { AvatarCall, AvatarError, connect, signalingUrl } = await import('../src/index.js');

/** The socket side a call writes to: records what it sends. */
function recordingSocket() {
  return { readyState: 1, sent: [], send(text) { this.sent.push(JSON.parse(text)); }, close() { this.readyState = 3; } };
}

const READY = { type: 'ready', call: 'c1', avatars: ['drawn'], profile: 'tiny', fps: 25, limits: {},
  ice_servers: [{ urls: ['turn:turn.example.org:3478'], username: 'u', credential: 'p' }] };

test('signalingUrl turns any server address into its /ws endpoint', () => {
  assert.equal(signalingUrl('http://127.0.0.1:8080'), 'ws://127.0.0.1:8080/ws');
  assert.equal(signalingUrl('https://avatar.example/app/'), 'wss://avatar.example/ws');
  assert.equal(signalingUrl('ws://h:1/ws', 'a b'), 'ws://h:1/ws?token=a+b');
  assert.equal(signalingUrl(), 'ws://127.0.0.1:8080/ws'); // no page: the default server
});

test('on() passes the detail, off() removes the listener', async () => {
  const call = new AvatarCall(recordingSocket(), null, {});
  const seen = [];
  const listener = (detail) => seen.push(detail.fps);
  call.on('stats', listener).on('stats', listener); // added twice: called once, as with addEventListener
  await call._receive({ type: 'stats', fps: 25 });
  call.off('stats', listener);
  await call._receive({ type: 'stats', fps: 24 });
  assert.deepEqual(seen, [25]);
  assert.equal(call.lastStats.fps, 24);
});

test("'ready' reaches a listener added after the server's message", async () => {
  const call = new AvatarCall(recordingSocket(), null, {});
  await call._receive(READY);
  const got = await new Promise((resolve) => call.on('ready', resolve));
  assert.equal(got.call, 'c1');
  assert.deepEqual((await call._ready).ice_servers, READY.ice_servers); // what connect() builds its peer with
  const removed = [];
  const late = (d) => removed.push(d);
  call.on('ready', late).off('ready', late); // removed before its turn: not called
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.deepEqual(removed, []);
});

test('server messages become events with the documented names', async () => {
  const call = new AvatarCall(recordingSocket(), null, {});
  const events = [];
  for (const type of ['speechstart', 'speechend', 'interrupted', 'avatar', 'degraded', 'output', 'error']) {
    call.on(type, (detail) => events.push([type, detail]));
  }
  await call._receive({ type: 'vad', event: 'speechstart', t: 1.5, input_t: 1.0, frame: 37, shows_in_s: 0.7 });
  await call._receive({ type: 'vad', event: 'speechend', t: 2.5, input_t: 2.0, frame: 62, shows_in_s: 0.7,
    played_to: 2.25, played_to_input_t: 1.75, cut: true });
  await call._receive({ type: 'interrupted', t: 2.25, input_t: 1.75, cut: true });
  await call._receive({ type: 'avatar', ok: true }); // the acknowledgement before the switch: no event
  await call._receive({ type: 'avatar', ok: true, frame: 80 });
  await call._receive({ type: 'degraded', reason: 'late', behind_s: 0.4 });
  await call._receive({ type: 'output', output: 'rtmp', ok: false, reason: 'BrokenPipeError' });
  await call._receive({ type: 'error', code: 'bad_image', message: 'not an image' });
  assert.deepEqual(events.slice(0, 6), [
    ['speechstart', { t: 1.5, inputT: 1.0, frame: 37, showsInS: 0.7 }],
    ['speechend', { t: 2.5, inputT: 2.0, frame: 62, showsInS: 0.7, playedTo: 2.25, playedToInputT: 1.75, cut: true }],
    ['interrupted', { type: 'interrupted', t: 2.25, input_t: 1.75, cut: true }],
    ['avatar', { frame: 80 }],
    ['degraded', { type: 'degraded', reason: 'late', behind_s: 0.4 }],
    ['output', { type: 'output', output: 'rtmp', ok: false, reason: 'BrokenPipeError' }],
  ]);
  const [type, err] = events[6];
  assert.equal(type, 'error');
  assert.ok(err instanceof AvatarError);
  assert.equal(err.code, 'bad_image');
  // An error before the answer fails the connect() that waits for it.
  await assert.rejects(call._answered, (e) => e.code === 'bad_image');
});

test('the answer is kept and settles the call; a bad one is a bad_sdp error', async () => {
  const given = [];
  const pc = { async setRemoteDescription(d) { given.push(d); }, close() {} };
  const call = new AvatarCall(recordingSocket(), pc, {});
  const answer = { type: 'answer', sdp: 'v=0', delay_s: 0.69, fps: 25, resolution: [128, 128] };
  await call._receive(answer);
  assert.equal(await call._answered, call);
  assert.deepEqual(call.answer, answer);
  assert.deepEqual(given, [{ type: 'answer', sdp: 'v=0' }]);

  const refusing = { async setRemoteDescription() { throw new Error('no'); }, close() {} };
  const bad = new AvatarCall(recordingSocket(), refusing, {});
  await bad._receive(answer);
  await assert.rejects(bad._answered, (e) => e instanceof AvatarError && e.code === 'bad_sdp');
});

test('controls send the protocol messages; close() says bye once and emits close once', async () => {
  const ws = recordingSocket();
  const call = new AvatarCall(ws, { close() {} }, {});
  const closes = [];
  call.on('close', (d) => closes.push(d.reason));
  call.interrupt();
  call.setPrompt('smile');
  await call.setAvatar({ avatar: 'drawn' });
  await call.setAvatar({ image: 'data:image/png;base64,AAAA' });
  await assert.rejects(call.setAvatar({}), (e) => e.code === 'bad_option');
  call.close('done');
  call.close('again');
  await call._receive({ type: 'close', reason: 'the call ended' });
  assert.deepEqual(ws.sent, [
    { type: 'interrupt' }, { type: 'prompt', text: 'smile' }, { type: 'avatar', id: 'drawn' },
    { type: 'avatar', image: 'data:image/png;base64,AAAA' }, { type: 'bye' }]);
  assert.deepEqual(closes, ['done']);
});

test('connect() refuses bad options before touching the network', async () => {
  await assert.rejects(connect({}), (e) => e instanceof AvatarError && e.code === 'bad_option');
  await assert.rejects(connect({ video: { srcObject: null }, audio: { getAudioTracks: () => [] } }),
    (e) => e.code === 'bad_option' && /audio track/.test(e.message));
});

test('index.d.ts declares every public member of AvatarCall', () => {
  const dts = readFileSync(new URL('../src/index.d.ts', import.meta.url), 'utf8');
  const body = dts.slice(dts.indexOf('export declare class AvatarCall'));
  const declared = body.slice(0, body.indexOf('\n}'));
  const call = new AvatarCall(recordingSocket(), null, {});
  const names = [...Object.keys(call), ...Object.getOwnPropertyNames(AvatarCall.prototype)]
    .filter((name) => !name.startsWith('_') && name !== 'constructor');
  assert.ok(names.includes('answer') && names.includes('off'));
  const missing = names.filter((name) => !new RegExp(`\\n\\s+(readonly\\s+)?${name}\\??[(:<]`).test(declared));
  assert.deepEqual(missing, []);
});
