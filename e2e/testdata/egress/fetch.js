// Minimal HTTPS-through-CONNECT client on node's own http and tls modules
// (node 20's fetch ignores proxy variables): prints the status code.
const http = require('http');
const tls = require('tls');
const [host, port, path] = process.argv.slice(2);
const proxy = new URL(process.env.HTTPS_PROXY);
const req = http.request({ host: proxy.hostname, port: proxy.port, method: 'CONNECT', path: `${host}:${port}` });
req.on('connect', (res, socket) => {
  if (res.statusCode !== 200) { console.log(`connect-${res.statusCode}`); process.exit(0); }
  const s = tls.connect({ socket, host }, () => {
    s.write(`GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nConnection: close\r\n\r\n`);
  });
  let buf = '';
  s.on('data', (d) => { buf += d; });
  s.on('end', () => { console.log(buf.split(' ')[1]); });
  s.on('error', (e) => { console.log(`tls-error ${e.code}`); process.exit(0); });
});
req.on('error', (e) => { console.log(`proxy-error ${e.code}`); });
req.end();
