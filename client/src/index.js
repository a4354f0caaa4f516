// Talking-avatar client: one WebRTC call to the avatar server. ES module, no build step.
//
//   import { connect } from './index.js';
//   const call = await connect({ url: 'ws://127.0.0.1:8080/ws', audio: 'mic', video: videoElement });
//   call.on('speechstart', (e) => ...); call.interrupt(); call.setPrompt('smile'); call.close();

const ANSWER_TIMEOUT_MS = 20000;
const WS_OPEN = 1; // WebSocket.OPEN (not a global in every runtime)

export class AvatarError extends Error {
  constructor(code, message, reason) {
    super(message);
    this.name = 'AvatarError';
    this.code = code;
    if (reason !== undefined) this.reason = reason;
  }
}

/** The websocket URL of a server: accepts ws(s)://.../ws, http(s)://host[:port][/...], or nothing (this page's server). */
export function signalingUrl(url, token) {
  const base = typeof location !== 'undefined' ? location.href : 'http://127.0.0.1:8080/';
  const u = new URL(url || '/ws', base);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  if (u.protocol === 'https:') u.protocol = 'wss:';
  if (!u.pathname.endsWith('/ws')) u.pathname = '/ws';
  if (token) u.searchParams.set('token', token);
  return u.toString();
}

async function imageToDataUrl(image) {
  if (typeof image === 'string') return image;
  if (typeof Blob !== 'undefined' && image instanceof Blob) {
    return await new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(new AvatarError('bad_image', 'the image could not be read'));
      reader.readAsDataURL(image);
    });
  }
  throw new AvatarError('bad_image', 'image must be a File, a Blob or a data: URL');
}

/** A live call. Events: ready, speechstart, speechend, stats, avatar, interrupted, degraded, error, close. */
export class AvatarCall extends EventTarget {
  constructor(ws, pc, video) {
    super();
    this.ws = ws;
    this.pc = pc;
    this.video = video;
    this.info = null; // the server's "ready" message
    this.answer = null; // the server's "answer" message (delay_s, fps, resolution)
    this.lastStats = null;
    this.closed = false;
    this._ownedStream = null;
    this._listeners = new Map(); // type -> Map(listener -> the EventTarget listener wrapping it)
    this._answered = new Promise((resolve, reject) => { this._settle = { resolve, reject }; });
    this._answered.catch(() => { /* connect() reports it */ });
    this._ready = new Promise((resolve) => { this._readied = resolve; });
  }

  /** Listen to an event; the listener gets the event's detail. 'ready' is sticky: a listener added after
   *  the server's "ready" message still gets it (once, on the next microtask). */
  on(type, listener) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Map());
    const forType = this._listeners.get(type);
    if (forType.has(listener)) return this;
    const wrapped = (event) => listener(event.detail, event);
    forType.set(listener, wrapped);
    this.addEventListener(type, wrapped);
    if (type === 'ready' && this.info) {
      const info = this.info;
      queueMicrotask(() => {
        if (forType.get(listener) === wrapped) listener(info, new CustomEvent('ready', { detail: info }));
      });
    }
    return this;
  }

  /** Stop listening (the same function that was given to on()). */
  off(type, listener) {
    const forType = this._listeners.get(type);
    const wrapped = forType && forType.get(listener);
    if (wrapped) {
      this.removeEventListener(type, wrapped);
      forType.delete(listener);
    }
    return this;
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _send(message) {
    if (this.ws.readyState === WS_OPEN) this.ws.send(JSON.stringify(message));
  }

  /** One signaling message from the server. */
  async _receive(msg) {
    switch (msg.type) {
      case 'ready': this.info = msg; this._readied(msg); this._emit('ready', msg); break;
      case 'answer':
        this.answer = msg;
        try {
          await this.pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
          this._settle.resolve(this);
        } catch (err) {
          this._settle.reject(new AvatarError('bad_sdp', `the answer could not be used: ${err}`));
        }
        break;
      case 'vad': {
        const detail = { t: msg.t, inputT: msg.input_t, frame: msg.frame, showsInS: msg.shows_in_s };
        if (msg.event === 'speechend') Object.assign(detail, { playedTo: msg.played_to, playedToInputT: msg.played_to_input_t, cut: msg.cut });
        this._emit(msg.event, detail);
        break;
      }
      case 'stats': this.lastStats = msg; this._emit('stats', msg); break;
      case 'interrupted': this._emit('interrupted', msg); break;
      case 'avatar': if (msg.frame !== undefined) this._emit('avatar', { frame: msg.frame }); break;
      case 'degraded': this._emit('degraded', msg); break;
      case 'output': this._emit('output', msg); break;
      case 'error': {
        const err = new AvatarError(msg.code, msg.message, msg.reason);
        this._emit('error', err);
        if (!this.answer) this._settle.reject(err);
        break;
      }
      case 'close': this.close(msg.reason || 'the server ended the call'); break;
      default: break;
    }
  }

  /** Drop speech the avatar has not said yet and go back to idle. */
  interrupt() { this._send({ type: 'interrupt' }); }

  /** Change the avatar mid-call: { avatar: 'id' } or { image: File | Blob | data: URL }. */
  async setAvatar({ avatar, image } = {}) {
    if (image) this._send({ type: 'avatar', image: await imageToDataUrl(image) });
    else if (avatar) this._send({ type: 'avatar', id: avatar });
    else throw new AvatarError('bad_option', 'setAvatar needs { avatar } or { image }');
  }

  /** Change the text prompt for the coming windows. */
  setPrompt(text) { this._send({ type: 'prompt', text: String(text ?? '') }); }

  /** Browser-side receive figures (fps, jitter buffer) merged with the server's last stats. */
  async getStats() {
    const out = { server: this.lastStats, video: null };
    if (!this.pc || this.closed) return out;
    const report = await this.pc.getStats();
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        out.video = {
          framesPerSecond: s.framesPerSecond ?? null,
          framesDecoded: s.framesDecoded ?? null,
          framesDropped: s.framesDropped ?? null,
          jitterBufferDelayS: s.jitterBufferEmittedCount ? s.jitterBufferDelay / s.jitterBufferEmittedCount : null,
        };
      }
    });
    return out;
  }

  /** Hang up (idempotent). */
  close(reason = 'closed by the caller') {
    if (this.closed) return;
    this.closed = true;
    try { this._send({ type: 'bye' }); } catch (_) { /* already gone */ }
    try { this.ws.close(); } catch (_) { /* already gone */ }
    try { this.pc.close(); } catch (_) { /* already gone */ }
    if (this._ownedStream) this._ownedStream.getTracks().forEach((t) => t.stop());
    this._emit('close', { reason });
  }
}

function openSocket(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.onopen = () => resolve(ws);
    ws.onerror = () => reject(new AvatarError('refused',
      'the server refused the connection (wrong token or origin, or it is not running)'));
  });
}

/**
 * Start a call.
 * @param {object} options  { url, audio: MediaStream | 'mic', video: HTMLVideoElement, image?, avatar?, prompt?, token?,
 *                           iceServers? (default: the STUN/TURN servers the server names in "ready"),
 *                           rtmp? (an rtmp:// URL the server also pushes the call to, if it allows that URL),
 *                           watch? (true: WHEP players may watch the call; the answer's `watch` says where) }
 * @returns {Promise<AvatarCall>} resolved once the server has answered.
 */
export async function connect(options = {}) {
  const { url, audio = 'mic', video, image, avatar, prompt, token, iceServers, rtmp, watch } = options;
  if (!video || typeof video !== 'object' || !('srcObject' in video)) {
    throw new AvatarError('bad_option', 'connect() needs a video element: { video: HTMLVideoElement }');
  }
  let stream = audio;
  let owned = null;
  if (audio === 'mic') {
    stream = owned = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
  }
  if (!stream || typeof stream.getAudioTracks !== 'function' || stream.getAudioTracks().length === 0) {
    throw new AvatarError('bad_option', "audio must be a MediaStream with an audio track, or 'mic'");
  }
  const imageData = image ? await imageToDataUrl(image) : undefined;

  const ws = await openSocket(signalingUrl(url, token));
  const call = new AvatarCall(ws, null, video);
  call._ownedStream = owned;

  const timer = setTimeout(() => call._settle.reject(new AvatarError('timeout', 'the server did not answer in time')),
    ANSWER_TIMEOUT_MS);

  ws.onmessage = (event) => {
    let msg;
    try { msg = JSON.parse(event.data); } catch (_) { return; }
    call._receive(msg);
  };
  ws.onclose = (event) => {
    if (!call.answer) call._settle.reject(new AvatarError('closed', event.reason || 'the server closed the connection'));
    call.close(event.reason || 'the connection closed');
  };

  try {
    // The slot is ours once "ready" comes (a full server sends an error instead); it names the ICE servers.
    const info = await Promise.race([call._ready, call._answered]);
    const pc = call.pc = new RTCPeerConnection({ iceServers: iceServers ?? info.ice_servers ?? [] });
    pc.ontrack = (event) => {
      const [remote] = event.streams;
      if (remote && video.srcObject !== remote) {
        video.srcObject = remote; // voice and video in one stream: the browser keeps them in sync
        video.play().catch(() => { /* autoplay needs a gesture; the page can call video.play() */ });
      }
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'failed') {
        call._emit('error', new AvatarError('connection_failed', 'the media connection failed'));
        call.close('connection failed');
      }
    };

    // Trickle ICE: the offer goes at once, each candidate after it as it is found, then null (the end).
    const candidates = [];
    let offered = false;
    pc.onicecandidate = ({ candidate }) => {
      if (candidate && !candidate.candidate) return; // an empty one ends a generation; null ends them all
      const message = candidate
        ? { type: 'candidate', candidate: candidate.candidate, sdpMid: candidate.sdpMid, sdpMLineIndex: candidate.sdpMLineIndex }
        : { type: 'candidate', candidate: null };
      if (offered) call._send(message);
      else candidates.push(message);
    };
    stream.getAudioTracks().forEach((track) => pc.addTrack(track, stream));
    pc.addTransceiver('video', { direction: 'recvonly' });
    await pc.setLocalDescription(await pc.createOffer());
    const offer = { type: 'offer', sdp: pc.localDescription.sdp };
    if (imageData) offer.image = imageData;
    else if (avatar) offer.avatar = avatar;
    if (prompt) offer.prompt = prompt;
    if (rtmp) offer.rtmp = rtmp;
    if (watch) offer.watch = true;
    call._send(offer);
    offered = true;
    candidates.forEach((message) => call._send(message));
    return await call._answered;
  } catch (err) {
    call.close(err.message);
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
