// A WHEP player (draft-ietf-wish-whep): one POST of a receive-only offer, the answer back, DELETE to stop.
// ?whep=/whep/ID fills in the address; the browser test drives window.watching.
const $ = (id) => document.getElementById(id);
const watching = { pc: null, resource: null, error: null };
window.watching = watching;

function headers(token, extra = {}) {
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

function gathered(pc) {
  // The whole offer in one POST: wait for ICE gathering (loopback and LAN addresses come at once).
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve());
    setTimeout(resolve, 2000);
  });
}

async function start() {
  const url = new URL($('whep').value, location.href).href;
  const token = $('token').value;
  const pc = new RTCPeerConnection();
  watching.pc = pc;
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  const stream = new MediaStream();
  pc.ontrack = (event) => { stream.addTrack(event.track); $('video').srcObject = stream; };
  pc.onconnectionstatechange = () => { $('status').textContent = `connection ${pc.connectionState}`; };
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const res = await fetch(url, { method: 'POST', headers: headers(token, { 'Content-Type': 'application/sdp' }),
                                 body: pc.localDescription.sdp });
  const body = await res.text();
  if (res.status !== 201) throw new Error(`the server said ${res.status}: ${body}`);
  watching.resource = new URL(res.headers.get('Location'), url).href;
  await pc.setRemoteDescription({ type: 'answer', sdp: body });
  $('start').disabled = true;
  $('stop').disabled = false;
}

async function stop() {
  const token = $('token').value;
  if (watching.pc) watching.pc.close();
  if (watching.resource) await fetch(watching.resource, { method: 'DELETE', headers: headers(token) });
  watching.pc = watching.resource = null;
  $('start').disabled = false;
  $('stop').disabled = true;
  $('status').textContent = 'not watching';
}

function fail(err) {
  watching.error = String(err.message || err);
  $('status').textContent = `could not watch: ${watching.error}`;
}

$('whep').value = new URLSearchParams(location.search).get('whep') || '';
$('start').addEventListener('click', () => start().catch(fail));
$('stop').addEventListener('click', () => stop().catch(fail));
watching.start = (token) => { $('token').value = token || ''; return start().catch(fail); };
watching.stop = () => stop().catch(fail);
