// The demo page: the client library and nothing else. ?autostart=1 starts a call at once (tests).
import { connect } from '../src/index.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
// State for people and for tests (the browser test reads window.demo).
const demo = { call: null, events: [], stats: null, error: null };
window.demo = demo;

function log(text) {
  const item = document.createElement('li');
  item.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  $('log').prepend(item);
}

async function loadAvatars() {
  const box = $('avatars');
  try {
    const { avatars } = await (await fetch('/avatars.json')).json();
    avatars.forEach((id, i) => {
      const label = document.createElement('label');
      label.innerHTML = `<img alt="" src="/avatars/${encodeURIComponent(id)}.png"><span><input type="radio" name="avatar"></span>`;
      const radio = label.querySelector('input');
      radio.value = id;
      radio.checked = i === 0 || id === params.get('avatar');
      label.querySelector('span').append(id);
      box.append(label);
    });
  } catch (err) {
    log(`could not list avatars: ${err}`);
  }
}

function showStats(stats) {
  demo.stats = stats;
  const l = stats.latency;
  $('stats').textContent = [
    `fps ${stats.fps}   sent ${stats.frames_sent}   repeated ${stats.frames_repeated}   dropped ${stats.frames_dropped}`,
    `latency budget: window ${l.window_s}s + look-ahead ${l.lookahead_s}s + compute allowance ${l.compute_allowance_s}s = output delay ${l.output_delay_s}s`,
    `compute last ${l.compute_last_s}s p95 ${l.compute_p95_s}s   slack min ${l.slack_min_s}s   VAD onset ${l.vad_onset_s}s   network RTT ${l.network_rtt_s}s`,
    `engine: ${JSON.stringify(stats.engine)}`,
  ].join('\n');
}

function record(type, detail) {
  demo.events.push({ type, detail, at: performance.now() });
}

async function start() {
  $('start').disabled = true;
  const chosen = document.querySelector('input[name=avatar]:checked');
  const file = $('upload').files[0];
  try {
    const call = await connect({
      url: params.get('ws') || undefined,
      audio: 'mic',
      video: $('video'),
      image: file || undefined,
      avatar: file ? undefined : (chosen ? chosen.value : params.get('avatar') || undefined),
      prompt: $('prompt').value || undefined,
      token: $('token').value || params.get('token') || undefined,
    });
    demo.call = call;
    call.on('speechstart', (d) => { record('speechstart', d); $('speaking').textContent = 'speaking'; $('speaking').classList.add('on'); log(`speech starts at ${d.t}s`); });
    call.on('speechend', (d) => { record('speechend', d); $('speaking').textContent = 'silent'; $('speaking').classList.remove('on'); log(`speech ends at ${d.t}s`); });
    call.on('stats', (s) => { record('stats', s); showStats(s); });
    call.on('interrupted', (d) => { record('interrupted', d); log('interrupted'); });
    call.on('avatar', (d) => { record('avatar', d); log(`new avatar from frame ${d.frame}`); });
    call.on('degraded', (d) => { record('degraded', d); log(`degraded: ${d.reason}`); });
    call.on('error', (e) => { record('error', { code: e.code, message: e.message }); log(`error ${e.code}: ${e.message}`); });
    call.on('close', (d) => { record('close', d); log(`closed: ${d.reason}`); $('start').disabled = false; $('interrupt').disabled = true; $('stop').disabled = true; });
    $('interrupt').disabled = false;
    $('stop').disabled = false;
    log('connected');
  } catch (err) {
    demo.error = { code: err.code, message: err.message };
    log(`could not start: ${err.message}`);
    $('start').disabled = false;
  }
}

$('start').onclick = start;
$('interrupt').onclick = () => demo.call && demo.call.interrupt();
$('stop').onclick = () => demo.call && demo.call.close();
$('prompt').onchange = () => demo.call && demo.call.setPrompt($('prompt').value);
$('upload').onchange = () => demo.call && $('upload').files[0] && demo.call.setAvatar({ image: $('upload').files[0] });
$('avatars').onchange = (event) => demo.call && event.target.name === 'avatar' && demo.call.setAvatar({ avatar: event.target.value });
await loadAvatars();
if (params.get('autostart') === '1') start();
