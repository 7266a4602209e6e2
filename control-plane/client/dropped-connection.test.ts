/**
 * A control plane that dies between its answer and its status: the response headers and message
 * reach the client, then the connection drops before the trailers. grpc-js has committed the call
 * by then (headers received) and does not retry it, so the client asks again itself, once, for
 * the rpcs whose repetition changes nothing, and never for the others. A real control plane
 * cannot be killed at that instant on purpose (app/control-plane-balancer.test.ts kills one under
 * load and met it once in a CI run), so the peer here is a bare HTTP/2 server that does it every
 * time on its first connection.
 */
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { AuthenticateResponse, ValidateTokenResponse } from '../../proto/gen/veza/auth/auth.js';
import { type ControlPlaneClient, createControlPlaneClient } from './index.js';

/** One gRPC message on the wire: not compressed, its length, its bytes. */
function frame(message: Uint8Array): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt32BE(message.length, 1);
  return Buffer.concat([header, message]);
}

let server: http2.Http2Server;
let client: ControlPlaneClient;
/** Calls per rpc path; the first call of each rpc loses its connection after the answer. */
const attempts = new Map<string, number>();

const answers: Record<string, Uint8Array> = {
  '/veza.auth.AuthService/ValidateToken': ValidateTokenResponse.encode(
    ValidateTokenResponse.fromPartial({ valid: true }),
  ).finish(),
  '/veza.auth.AuthService/Authenticate': AuthenticateResponse.encode(
    AuthenticateResponse.fromPartial({ success: true }),
  ).finish(),
};

beforeEach(async () => {
  attempts.clear();
  server = http2.createServer();
  server.on('stream', (stream, headers) => {
    const path = String(headers[':path']);
    const answer = answers[path];
    // The health service (and anything else) is not there: the balancer then takes the connection as serving.
    if (!answer) {
      stream.respond(
        { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '12' },
        { endStream: true },
      );
      return;
    }
    stream.resume();
    stream.on('end', () => {
      const attempt = (attempts.get(path) ?? 0) + 1;
      attempts.set(path, attempt);
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      if (attempt === 1) {
        // The answer goes out, then the process is gone before its status.
        stream.write(frame(answer), () => stream.session?.destroy());
        return;
      }
      stream.end(frame(answer));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  client = createControlPlaneClient({
    address: `127.0.0.1:${port}`,
    apiKey: 'test-key',
    defaultDeadlineMs: 5_000,
  });
});

afterEach(async () => {
  client.close();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

it('asks an idempotent rpc again when the connection drops after the answer, before the status', async () => {
  const answer = await client.auth.validateToken({ token: 'a token' });
  expect(answer.valid).toBe(true);
  expect(attempts.get('/veza.auth.AuthService/ValidateToken')).toBe(2);
});

it('does not ask again an rpc whose repetition changes something (a login creates a session)', async () => {
  await expect(
    client.auth.authenticate({ email: 'a@example.com', password: 'x', deviceId: 'd', ipAddress: '' }),
  ).rejects.toMatchObject({ code: 'unavailable', message: 'the control plane is unavailable' });
  expect(attempts.get('/veza.auth.AuthService/Authenticate')).toBe(1);
});
