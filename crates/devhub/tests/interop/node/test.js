// The official Azure IoT Node device SDK against devhub, over WebSocket/TLS (443) and
// MQTT/TLS (8883), and the Node service SDK (azure-iothub's Registry, over HTTPS on 443).
// The device cases' service calls use devhub's REST API, signed by azure-iot-common's own
// SharedAccessSignature. Prints "N passed, N failed" last; exits non-zero on a failure.
'use strict';
const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const readline = require('readline');
const { Client, Message } = require('azure-iot-device');
const { Mqtt, MqttWs } = require('azure-iot-device-mqtt');
const { SharedAccessSignature } = require('azure-iot-common');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function startDevhub() {
  const bin = process.env.DEVHUB_BIN || 'target/debug/devhub';
  const tlsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'devhub-node-'));
  const child = spawn(bin, ['serve', '--in-memory', '--hub-name', 'localhost', '--listen', '127.0.0.1:0',
    '--tls-listen', '127.0.0.1:443', '--mqtt-tls-listen', '127.0.0.1:8883', '--tls-dir', tlsDir,
    '--device', 'node-ws', '--device', 'node-mqtt', '--quiet'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const hub = { child, tlsDir, caPath: path.join(tlsDir, 'ca.pem'), devices: {} };
  const lines = readline.createInterface({ input: child.stdout });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('devhub did not start')), 30000);
    lines.on('line', (l) => {
      let m;
      if ((m = l.match(/^devhub: service\s+(.*)$/))) hub.service = m[1];
      if ((m = l.match(/^devhub: device\s+(.*DeviceId=([^;]+);.*)$/))) hub.devices[m[2]] = m[1];
      if ((m = l.match(/^devhub: listening\s+http:\/\/([^/]+)\//))) hub.http = m[1];
      if (l.includes('mqtts://')) { clearTimeout(timer); resolve(); }
    });
  });
  return hub;
}

function serviceToken(hub) {
  const key = hub.service.match(/SharedAccessKey=([^;]+)/)[1];
  const expiry = Math.floor(Date.now() / 1000) + 600;
  return SharedAccessSignature.create('localhost', 'iothubowner', key, expiry).toString();
}

async function rest(hub, method, p, body, headers = {}) {
  const r = await fetch(`http://${hub.http}${p}`, {
    method, body, headers: { Authorization: serviceToken(hub), 'Content-Type': 'application/json', ...headers },
  });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null };
}

async function waitFor(what, f, ms = 10000) {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

async function deviceRoundTrip(hub, deviceId, Transport) {
  const client = Client.fromConnectionString(hub.devices[deviceId] + ';GatewayHostName=127.0.0.1', Transport);
  client.setOptions({ ca: hub.ca() });
  const c2d = [];
  const desired = [];
  try {
    await client.open();
    const m = new Message(JSON.stringify({ t: 21 }));
    m.messageId = `${deviceId}-1`;
    m.contentType = 'application/json';
    m.contentEncoding = 'utf-8';
    m.properties.add('alert', 'high temp');
    await client.sendEvent(m);
    const events = (await rest(hub, 'GET', `/devhub/events?device=${deviceId}`)).json;
    const ev = events.find((e) => e.properties.system['$.mid'] === `${deviceId}-1`);
    assert(ev, 'telemetry stored');
    assert(ev.properties.application.alert === 'high temp', 'application property kept');
    assert(ev.properties.system['$.ct'] === 'application/json', 'content type kept');

    const twin = await client.getTwin();
    const before = twin.properties.reported.$version;
    await new Promise((res, rej) => twin.properties.reported.update({ sdk: 'node' }, (e) => (e ? rej(e) : res())));
    const svcTwin = (await rest(hub, 'GET', `/twins/${deviceId}`)).json;
    assert(svcTwin.properties.reported.sdk === 'node', 'reported patch reached the hub');
    assert(svcTwin.properties.reported.$version === before + 1, 'reported version bumped');

    twin.on('properties.desired', (d) => desired.push(d));
    client.onDeviceMethod('ping', (req, resp) => resp.send(201, { pong: req.payload }, () => {}));
    client.on('message', (msg) => { c2d.push(msg); client.complete(msg, () => {}); });
    await sleep(500); // subscriptions settle

    const patch = await rest(hub, 'PATCH', `/twins/${deviceId}`, JSON.stringify({ properties: { desired: { rate: 9 } } }));
    assert(patch.status === 200, 'desired patch accepted');
    await waitFor('desired update', () => desired.some((d) => d.rate === 9));

    const call = await rest(hub, 'POST', `/twins/${deviceId}/methods`, JSON.stringify({ methodName: 'ping', payload: 7, responseTimeoutInSeconds: 10 }));
    assert(call.status === 200 && call.json.status === 201 && call.json.payload.pong === 7, `method round trip: ${JSON.stringify(call)}`);

    const sent = await rest(hub, 'POST', `/devices/${deviceId}/messages/deviceBound`, 'hello node',
      { 'iothub-messageid': 'c2d-node', 'iothub-app-color': 'blue' });
    assert(sent.status === 200, 'C2D accepted');
    await waitFor('C2D message', () => c2d.length > 0);
    assert(c2d[0].data.toString() === 'hello node', 'C2D body');
    assert(c2d[0].messageId === 'c2d-node', 'C2D message id');
    assert(c2d[0].properties.getValue('color') === 'blue', 'C2D application property');
  } finally {
    await client.close();
  }
}

async function wrongKeyIsRefused(hub) {
  const bad = hub.devices['node-ws'].replace(/SharedAccessKey=[^;]+/, 'SharedAccessKey=d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktMTI=');
  const client = Client.fromConnectionString(bad + ';GatewayHostName=127.0.0.1', MqttWs);
  client.setOptions({ ca: hub.ca() });
  let error = null;
  try { await client.open(); } catch (e) { error = e; }
  try { await client.close(); } catch (e) { /* already closed */ }
  assert(error, 'a wrong key must be refused');
  // Refused by the hub (CONNACK 5), not by TLS.
  assert(/not authorized/i.test(error.message) && !/certificate/i.test(error.message), `refusal reason: ${error.message}`);
}

// The service SDK's registry: identities (listed at `/devices/`), If-Match, twins, the
// query API a page at a time, and the registry statistics.
async function serviceRegistry(hub) {
  const { Registry } = require('azure-iothub');
  const reg = Registry.fromConnectionString(hub.service);
  const ids = ['node-q0', 'node-q1', 'node-q2'];
  for (const [i, deviceId] of ids.entries()) {
    const created = (await reg.create({ deviceId, status: 'enabled' })).responseBody;
    assert(created.deviceId === deviceId && created.authentication.symmetricKey.primaryKey, 'device created with keys');
    const twin = (await reg.getTwin(deviceId)).responseBody;
    await reg.updateTwin(deviceId, { tags: { site: i === 1 ? 'b44' : 'b43', floor: i } }, twin.etag);
  }
  // No etag: the SDK sends If-Match "*".
  const disabled = (await reg.update({ deviceId: 'node-q2', status: 'disabled' })).responseBody;
  assert(disabled.status === 'disabled', 'update without an etag');
  const listed = (await reg.list()).responseBody.map((d) => d.deviceId);
  assert(ids.every((d) => listed.includes(d)), `Registry.list: ${listed}`);
  const stats = (await reg.getRegistryStatistics()).responseBody;
  assert(stats.disabledDeviceCount === 1 && stats.totalDeviceCount === listed.length, `statistics: ${JSON.stringify(stats)}`);

  // One twin a page, following the continuation token.
  const query = reg.createQuery("SELECT * FROM devices WHERE tags.site = 'b43'", 1);
  const seen = [];
  while (query.hasMoreResults) {
    const page = await query.nextAsTwin();
    assert(page.result.length <= 1, 'page size');
    seen.push(...page.result.map((t) => t.deviceId));
  }
  assert(JSON.stringify(seen) === JSON.stringify(['node-q0', 'node-q2']), `query pages: ${seen}`);
  const count = await reg.createQuery('SELECT COUNT() AS n FROM devices WHERE tags.floor >= 1').next();
  assert(count.result[0].n === 2, `COUNT: ${JSON.stringify(count.result)}`);

  let stale = null;
  try {
    await reg.updateTwin('node-q0', { tags: { x: 1 } }, 'AAAAAAAAAAE=');
  } catch (e) { stale = e; }
  assert(stale && stale.response && stale.response.statusCode === 412, `a stale etag is 412: ${stale}`);
  for (const deviceId of ids) await reg.delete(deviceId);
}

const CASES = {
  'mqtt': ['node SDK over MQTT/TLS 8883', (hub) => deviceRoundTrip(hub, 'node-mqtt', Mqtt)],
  'ws': ['node SDK over WebSocket/TLS 443', (hub) => deviceRoundTrip(hub, 'node-ws', MqttWs)],
  'wrong-key': ['node SDK with a wrong key is refused', (hub) => wrongKeyIsRefused(hub)],
  'service': ['node service SDK: registry, twins, query pages, statistics over HTTPS 443', (hub) => serviceRegistry(hub)],
};

// Each case runs in a process of its own: after one TLS client has run in a process, the
// SDK's next client in that process no longer verifies the server with the `ca` it was
// given ("unable to verify the first certificate"), a client-side quirk of the SDK.
async function child(name) {
  const hub = JSON.parse(process.env.DEVHUB_CHILD);
  hub.ca = () => fs.readFileSync(hub.caPath, 'utf8');
  try {
    await CASES[name][1](hub);
    process.exit(0);
  } catch (e) {
    console.log(`  ${e && (e.stack || e.message || e)}`);
    process.exit(1);
  }
}

async function parent() {
  const hub = await startDevhub();
  const shared = JSON.stringify({ http: hub.http, service: hub.service, devices: hub.devices, caPath: hub.caPath });
  let passed = 0;
  let failed = 0;
  for (const [name, [title]] of Object.entries(CASES)) {
    const r = require('child_process').spawnSync(process.execPath, [__filename, name], {
      // The service SDK takes no CA option: Node's own trust store gets devhub's CA.
      env: { ...process.env, DEVHUB_CHILD: shared, NODE_EXTRA_CA_CERTS: hub.caPath }, encoding: 'utf8', timeout: 60000,
    });
    if (r.status === 0) { passed += 1; console.log(`ok - ${title}`); } else { failed += 1; console.log(`not ok - ${title}\n${r.stdout}${r.stderr}`); }
  }
  hub.child.kill();
  fs.rmSync(hub.tlsDir, { recursive: true, force: true });
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}

if (process.argv[2]) {
  child(process.argv[2]);
} else {
  parent().catch((e) => { console.log(`not ok - setup: ${e && e.message}`); console.log('0 passed, 1 failed'); process.exit(1); });
}
