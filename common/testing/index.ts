/**
 * For tests only: databases of their own (embedded, or on the machine's PostgreSQL), the
 * machine's Redis and NATS with a namespace per run, free ports, and where a tone is in a recording. vitest's global setup
 * (global-setup.ts) is referenced by vitest.config.ts, not imported.
 */
export {
  clusterServices,
  clusterTestEnv,
  createTestDatabase,
  type TestDatabase,
  testNamespace,
} from './databases.js';
export { freePort } from './free-port.js';
export { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from './otlp-receiver.js';
export { type S3TestServer, startS3TestServer } from './s3-server.js';
export { startTcpProxy, type TcpProxy } from './tcp-proxy.js';
export { type DecodedAudio, decodeMono } from './tone.js';
