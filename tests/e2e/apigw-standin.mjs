// A stand-in for the deployed API Gateway, for the functions run by lambda-runtime.mjs:
// - the HTTP API: POST /api/replicache/{push,pull,poke-ticket} become payload 2.0 events for
//   the push, pull and poke functions (AuthMode=header: no JWT authorizer);
// - the WebSocket API: each connection's handshake is a `$connect` event for the poke
//   function (refused with the status it answers), its close a `$disconnect`, and the
//   `{"action":"ping"}` keep-alive is answered by nobody, like the template's MOCK route;
// - the management API the push function pokes through: POST /live/@connections/{id} sends
//   the body to that connection, DELETE closes it, or either answers 410 GoneException.

import { randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import { WebSocketServer } from 'ws';

const STAGE = 'live';

/** The HTTP API's payload 2.0 event for a request (`url` a URL, `headers` lower-case names). */
export function httpEvent({ method, url, headers, body }) {
  const now = Date.now();
  return {
    version: '2.0',
    routeKey: `${method} ${url.pathname}`,
    rawPath: url.pathname,
    rawQueryString: url.search.slice(1),
    headers,
    queryStringParameters: url.search ? Object.fromEntries(url.searchParams) : undefined,
    requestContext: {
      accountId: '123456789012',
      apiId: 'standin',
      domainName: headers.host,
      domainPrefix: 'standin',
      http: { method, path: url.pathname, protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: headers['user-agent'] ?? '' },
      requestId: randomUUID(),
      routeKey: `${method} ${url.pathname}`,
      stage: '$default',
      time: new Date(now).toUTCString(),
      timeEpoch: now,
    },
    body,
    isBase64Encoded: false,
  };
}

function wsEvent(type, connectionId, query) {
  const now = Date.now();
  const event = {
    headers: { Host: 'standin.execute-api.us-east-1.amazonaws.com' },
    multiValueHeaders: { Host: ['standin.execute-api.us-east-1.amazonaws.com'] },
    requestContext: {
      routeKey: type === 'CONNECT' ? '$connect' : '$disconnect',
      eventType: type,
      extendedRequestId: randomUUID(),
      requestTime: new Date(now).toUTCString(),
      messageDirection: 'IN',
      stage: STAGE,
      connectedAt: now,
      requestTimeEpoch: now,
      identity: { sourceIp: '127.0.0.1' },
      requestId: randomUUID(),
      domainName: 'standin.execute-api.us-east-1.amazonaws.com',
      connectionId,
      apiId: 'standin',
    },
    isBase64Encoded: false,
  };
  if (query && [...query.keys()].length) {
    event.queryStringParameters = Object.fromEntries(query);
    event.multiValueQueryStringParameters = Object.fromEntries([...query.keys()].map((k) => [k, query.getAll(k)]));
  }
  return event;
}

/**
 * Starts the stand-in in front of `functions` ({push, pull, poke}, each with `invoke`).
 * Returns {api, ws, managementEndpoint, posts, stop}: the HTTP API's base URL, the WebSocket
 * URL (the template's PokeURL), the endpoint the push function's POKE_ENDPOINT takes, the
 * number of management posts and deletes so far.
 */
export async function startApiGateway(functions) {
  const routes = {
    '/api/replicache/push': 'push',
    '/api/replicache/pull': 'pull',
    '/api/replicache/poke-ticket': 'poke',
  };
  const httpApi = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', async () => {
      const url = new URL(req.url, 'http://standin');
      const fn = routes[url.pathname];
      if (!fn || req.method !== 'POST') return res.writeHead(404).end();
      try {
        const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(',') : v]));
        const out = await functions[fn].invoke(httpEvent({ method: req.method, url, headers, body }));
        const payload = out.isBase64Encoded ? Buffer.from(out.body ?? '', 'base64') : (out.body ?? '');
        res.writeHead(out.statusCode ?? 200, out.headers ?? {}).end(payload);
      } catch (e) {
        res.writeHead(502).end(String(e));
      }
    });
  });

  const sockets = new Map(); // connectionId -> ws
  let posts = 0;
  let deletes = 0;
  const wss = new WebSocketServer({ noServer: true });
  const wsApi = http.createServer((req, res) => {
    // The management API on the same port, under the stage.
    const m = req.url.match(new RegExp(`^/${STAGE}/@connections/([^/?]+)$`));
    if (!m || !['POST', 'DELETE'].includes(req.method)) return res.writeHead(404).end();
    if (req.method === 'DELETE') {
      // DeleteConnection: API Gateway closes the socket, then sends `$disconnect`.
      const ws = sockets.get(decodeURIComponent(m[1]));
      if (!ws) {
        res.writeHead(410, { 'x-amzn-errortype': 'GoneException', 'content-type': 'application/json' }).end('{"message":null}');
        return;
      }
      deletes += 1;
      ws.close(1000);
      res.writeHead(204).end();
      return;
    }
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      posts += 1;
      const ws = sockets.get(decodeURIComponent(m[1]));
      if (!ws) {
        res.writeHead(410, { 'x-amzn-errortype': 'GoneException', 'content-type': 'application/json' }).end('{"message":null}');
        return;
      }
      ws.send(body);
      res.writeHead(200).end();
    });
  });
  wsApi.on('upgrade', async (req, socket, head) => {
    const url = new URL(req.url, 'http://standin');
    const connectionId = randomBytes(12).toString('base64');
    let out;
    try {
      out = await functions.poke.invoke(wsEvent('CONNECT', connectionId, url.searchParams));
    } catch {
      out = { statusCode: 502 };
    }
    if ((out.statusCode ?? 200) !== 200) {
      socket.end(`HTTP/1.1 ${out.statusCode} Refused\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.set(connectionId, ws);
      ws.on('message', () => {}); // the keep-alive route: a MOCK integration, no reply
      ws.on('close', () => {
        sockets.delete(connectionId);
        functions.poke.invoke(wsEvent('DISCONNECT', connectionId)).catch(() => {});
      });
    });
  });

  await Promise.all([httpApi, wsApi].map((s) => new Promise((resolve) => s.listen(0, '127.0.0.1', resolve))));
  const wsPort = wsApi.address().port;
  return {
    api: `http://127.0.0.1:${httpApi.address().port}`,
    ws: `ws://127.0.0.1:${wsPort}/${STAGE}`,
    managementEndpoint: `http://127.0.0.1:${wsPort}/${STAGE}`,
    get posts() { return posts; },
    get deletes() { return deletes; },
    async stop() {
      for (const ws of sockets.values()) ws.terminate();
      await Promise.all([httpApi, wsApi].map((s) => new Promise((resolve) => { s.closeAllConnections?.(); s.close(resolve); })));
    },
  };
}
