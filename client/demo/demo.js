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

// The server's fps counts every frame it sends, a repeat of the last one included (it stands in for a
// frame that was not ready in time); a repeat shows nothing new, so the page counts new frames only.
let previous = null;
function newFramesPerSecond(stats) {
  const sent = stats.frames_sent - (previous ? previous.frames_sent : 0);
  const repeated = stats.frames_repeated - (previous ? previous.frames_repeated : 0);
  previous = stats;
  return { fps: sent > 0 ? stats.fps * (sent - repeated) / sent : 0, repeated };
}

function showStats(stats) {
  demo.stats = stats;
  const [height, width] = demo.call.answer.resolution;
  const shown = newFramesPerSecond(stats);
  demo.shown = { fps: shown.fps, width, height };
  const rtt = stats.latency.network_rtt_s;
  $('stats').textContent = [
    `Picture: ${width} × ${height} pixels, ${shown.fps.toFixed(1)} fps (new frames shown per second; ${stats.fps} sent)`,
    `Delay: the face follows your voice by ${stats.latency.output_delay_s.toFixed(2)} s`,
    shown.repeated > 0
      ? `Hiccups: ${shown.repeated} frames shown twice since the last update (the server was late)`
      : 'Smooth: every frame on time',
    rtt === null || rtt === undefined ? 'Network round trip: not measured yet' : `Network round trip: ${Math.round(rtt * 1000)} ms`,
  ].join('\n');
}

function record(type, detail) {
  demo.events.push({ type, detail, at: performance.now() });
}

function speaking(on) {
  $('speaking').textContent = on ? 'speaking' : 'quiet';
  $('speaking').classList.toggle('on', on);
}

async function start() {
  if (!window.isSecureContext || !navigator.mediaDevices) {
    demo.error = { code: 'insecure', message: 'no microphone on a page that is not secure' };
    log('The browser lets only secure pages use the microphone: open this page over https:// (start the '
      + 'server with --tls-cert and --tls-key), or on the machine that runs the server (http://localhost or '
      + '127.0.0.1).');
    return;
  }
  $('start').disabled = true;
  previous = null;
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
    call.on('speechstart', (d) => { record('speechstart', d); speaking(true); log('you started speaking'); });
    call.on('speechend', (d) => { record('speechend', d); speaking(false); log('you stopped speaking'); });
    call.on('stats', (s) => { record('stats', s); showStats(s); });
    call.on('interrupted', (d) => { record('interrupted', d); log('interrupted: the face skips what it has not said yet'); });
    call.on('avatar', (d) => { record('avatar', d); log('the new face is on'); });
    call.on('degraded', (d) => {
      record('degraded', d);
      log(d.reason === 'late_frames'
        ? `the server is running late: ${Math.round(d.repeated_share * 100)}% of the frames were shown twice`
        : `the server fell ${d.behind_s} s behind and skipped ahead to catch up`);
    });
    call.on('error', (e) => { record('error', { code: e.code, message: e.message }); log(`problem: ${e.message}`); });
    call.on('close', (d) => { record('close', d); log(`call ended: ${d.reason}`); $('start').disabled = false; $('interrupt').disabled = true; $('stop').disabled = true; });
    $('interrupt').disabled = false;
    $('stop').disabled = false;
    log(`connected: the face follows your voice by ${call.answer.delay_s.toFixed(2)} s`);
  } catch (err) {
    demo.error = { code: err.code, message: err.message };
    log(`could not start: ${err.message}`);
    $('start').disabled = false;
  }
}

$('start').onclick = start;
// Off by default: with the microphone driving the face, the call's sound is your own voice, late.
$('hear-voice').onchange = () => { $('video').muted = !$('hear-voice').checked; };
$('interrupt').onclick = () => demo.call && demo.call.interrupt();
$('stop').onclick = () => demo.call && demo.call.close();
$('prompt').onchange = () => demo.call && demo.call.setPrompt($('prompt').value);
$('upload').onchange = () => demo.call && $('upload').files[0] && demo.call.setAvatar({ image: $('upload').files[0] });
$('avatars').onchange = (event) => demo.call && event.target.name === 'avatar' && demo.call.setAvatar({ avatar: event.target.value });
await loadAvatars();
if (params.get('autostart') === '1') start();
