/**
 * Test support for the control plane's tests (imported by *.test.ts only): a real
 * control plane on port 0 over a fresh database and the real standalone ports, the
 * generated clients, a log capture, a digest of the account tables for "nothing changed"
 * checks, and the uploads module's track records for the worker's tests.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import {
  type CallOptions,
  type ClientReadableStream,
  credentials,
  Metadata,
  type ServiceError,
} from '@grpc/grpc-js';
import { pino } from 'pino';
import type { Sql } from '../common/db/index.js';
import { type Config, type Logger, loadConfig } from '../common/index.js';
import { createPorts, type Ports } from '../common/ports/index.js';
import { createTestDatabase, type TestDatabase } from '../common/testing/index.js';
import {
  AuthenticateRequest,
  AuthServiceClient,
  ConfirmEmailRequest,
  type DeepPartial,
  GetUserInfoRequest,
  RefreshTokenRequest,
  RegisterRequest,
  RevokeTokenRequest,
  SetUserRoleRequest,
  UpdateProfileRequest,
  type UserSession,
  ValidateTokenRequest,
} from '../proto/gen/veza/auth/auth.js';
import { type ControlPlane, startControlPlane } from './index.js';

/**
 * The uploads module's track records alone, for tests of the worker role that run no control
 * plane (through app/testing: the worker's own folder may not import the control plane).
 */
export { serveTrackRecords } from './uploads/index.js';

/** Log lines as parsed JSON objects, for asserting what was (and was not) logged. */
type LogLine = Record<string, unknown>;

export interface LogCapture {
  log: Logger;
  lines: LogLine[];
  text(): string;
  /** Resolves with the first line (already logged or still to come) that matches. */
  waitForLine(matches: (line: LogLine) => boolean): Promise<LogLine>;
}

export function captureLogs(level = 'info'): LogCapture {
  const lines: LogLine[] = [];
  const chunks: string[] = [];
  const waiters = new Set<(line: LogLine) => void>();
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      const text = chunk.toString('utf8');
      chunks.push(text);
      for (const raw of text.split('\n').filter(Boolean)) {
        const line = JSON.parse(raw) as LogLine;
        lines.push(line);
        for (const waiter of [...waiters]) waiter(line);
      }
      done();
    },
  });
  return {
    log: pino({ level }, sink),
    lines,
    text: () => chunks.join(''),
    waitForLine(matches) {
      const found = lines.find(matches);
      if (found) return Promise.resolve(found);
      return new Promise((resolve) => {
        const waiter = (line: LogLine) => {
          if (!matches(line)) return;
          waiters.delete(waiter);
          resolve(line);
        };
        waiters.add(waiter);
      });
    },
  };
}

export function testConfig(dataDir: string, env: Record<string, string> = {}): Config {
  return loadConfig({
    VEZA_DATA_DIR: dataDir,
    GRPC_HOST: '127.0.0.1',
    GRPC_PORT: '0',
    LOG_LEVEL: 'silent',
    PUBLIC_URL: 'http://veza.test',
    LOGIN_LIMIT_PER_IP: '1000',
    REGISTER_LIMIT_PER_IP: '1000',
    ...env,
  });
}

export interface Harness {
  config: Config;
  db: TestDatabase;
  sql: Sql;
  ports: Ports;
  controlPlane: ControlPlane;
  address: string;
  apiKey: string;
  logs: LogCapture;
  auth: AuthServiceClient;
  close(): Promise<void>;
}

export async function startHarness(env: Record<string, string> = {}): Promise<Harness> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'veza-cp-'));
  const config = testConfig(dataDir, env);
  const db = await createTestDatabase('embedded');
  const logs = captureLogs();
  const ports = await createPorts(config, { sql: db.sql, log: logs.log });
  const apiKey = randomBytes(24).toString('base64url');
  const controlPlane = await startControlPlane({ config, sql: db.sql, ports, log: logs.log, apiKey });
  const address = `127.0.0.1:${controlPlane.port}`;
  const auth = new AuthServiceClient(address, credentials.createInsecure());
  return {
    config,
    db,
    sql: db.sql,
    ports,
    controlPlane,
    address,
    apiKey,
    logs,
    auth,
    async close() {
      auth.close();
      await controlPlane.close();
      await ports.close();
      await db.drop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

type Callback<Res> = (error: ServiceError | null, response: Res) => void;
/** The last overload ts-proto generates for a unary rpc. */
type UnaryFn<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: Callback<Res>,
) => unknown;

/** Calls a unary rpc of a generated client; resolves with the response or rejects with the ServiceError. */
export function unary<Req, Res>(
  fn: UnaryFn<Req, Res>,
  request: Req,
  metadata = new Metadata(),
): Promise<Res> {
  return new Promise((resolve, reject) => {
    fn(request, metadata, { deadline: Date.now() + 20_000 }, (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}

/** The ServiceError a call fails with (fails the test when it succeeds). */
export async function grpcError(promise: Promise<unknown>): Promise<ServiceError> {
  try {
    await promise;
  } catch (error) {
    return error as ServiceError;
  }
  throw new Error('expected the call to fail');
}

export function metadata(values: Record<string, string>): Metadata {
  const md = new Metadata();
  for (const [key, value] of Object.entries(values)) md.set(key, value);
  return md;
}

export const bearer = (token: string) => metadata({ authorization: `Bearer ${token}` });

/** Messages of a server stream, awaited one condition at a time (no sleeps). */
export class StreamReader<T> {
  private readonly received: T[] = [];
  private waiters: Array<() => void> = [];
  error: ServiceError | null = null;
  ended = false;

  constructor(readonly stream: ClientReadableStream<T>) {
    stream.on('data', (message: T) => {
      this.received.push(message);
      this.notify();
    });
    stream.on('error', (error: ServiceError) => {
      this.error = error;
      this.notify();
    });
    stream.on('end', () => {
      this.ended = true;
      this.notify();
    });
  }

  private notify() {
    for (const waiter of this.waiters.splice(0)) waiter();
  }

  get messages(): readonly T[] {
    return this.received;
  }

  /** Resolves once `count` messages arrived; rejects if the stream fails or ends first. */
  async waitFor(count: number): Promise<T[]> {
    while (this.received.length < count) {
      if (this.error) throw this.error;
      if (this.ended) throw new Error(`stream ended after ${this.received.length} of ${count} messages`);
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    return this.received.slice(0, count);
  }

  /** Resolves when the stream has ended or failed. */
  async finished(): Promise<void> {
    while (!this.ended && !this.error) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }
}

const ACCOUNT_TABLES = [
  'users',
  'sessions',
  'refresh_tokens',
  'email_confirmations',
  'email_outbox',
  'audit_log',
] as const;

/** A checksum of the account tables' contents: equal snapshots mean a failed call changed nothing (updates included). */
export async function tableDigest(sql: Sql): Promise<string> {
  const parts: string[] = [];
  for (const table of ACCOUNT_TABLES) {
    // The outbox dispatcher delivers in the background; what a call wrote is the message, not its delivery state.
    const [row] =
      table === 'email_outbox'
        ? await sql<{ digest: string | null }[]>`
            select md5(string_agg(concat_ws('/', id, to_address, subject, body_text, kind), '|' order by id)) as digest
            from email_outbox`
        : await sql<{ digest: string | null }[]>`
            select md5(string_agg(t::text, '|' order by t::text)) as digest from ${sql(table)} t`;
    parts.push(`${table}:${row?.digest ?? 'empty'}`);
  }
  return parts.join(',');
}

export const STRONG_PASSWORD = 'Correct-Horse-42';

/** Promise versions of every AuthService rpc, taking partial requests (defaults filled in). */
export function authCalls(client: AuthServiceClient) {
  return {
    authenticate: (request: DeepPartial<AuthenticateRequest>, md?: Metadata) =>
      unary(client.authenticate.bind(client), AuthenticateRequest.fromPartial(request), md),
    validateToken: (token: string, md?: Metadata) =>
      unary(client.validateToken.bind(client), ValidateTokenRequest.fromPartial({ token }), md),
    refreshToken: (request: DeepPartial<RefreshTokenRequest>, md?: Metadata) =>
      unary(client.refreshToken.bind(client), RefreshTokenRequest.fromPartial(request), md),
    revokeToken: (request: DeepPartial<RevokeTokenRequest>, md?: Metadata) =>
      unary(client.revokeToken.bind(client), RevokeTokenRequest.fromPartial(request), md),
    getUserInfo: (userId: number, md?: Metadata) =>
      unary(client.getUserInfo.bind(client), GetUserInfoRequest.fromPartial({ userId }), md),
    register: (request: DeepPartial<RegisterRequest>, md?: Metadata) =>
      unary(client.register.bind(client), RegisterRequest.fromPartial(request), md),
    confirmEmail: (token: string, md?: Metadata) =>
      unary(client.confirmEmail.bind(client), ConfirmEmailRequest.fromPartial({ token }), md),
    updateProfile: (request: DeepPartial<UpdateProfileRequest>, md?: Metadata) =>
      unary(client.updateProfile.bind(client), UpdateProfileRequest.fromPartial(request), md),
    setUserRole: (request: DeepPartial<SetUserRoleRequest>, md?: Metadata) =>
      unary(client.setUserRole.bind(client), SetUserRoleRequest.fromPartial(request), md),
    getJwks: (md?: Metadata) => unary(client.getJwks.bind(client), {}, md),
    streamUserSessions: (userId: number, md?: Metadata) =>
      new StreamReader<UserSession>(client.streamUserSessions({ userId }, md ?? new Metadata())),
  };
}
