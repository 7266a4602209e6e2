/**
 * The chat scenario: C clients in R rooms, each sending M messages per second, through the
 * whole path (moderation and PostgreSQL storage included), counting deliveries, acks and
 * send-to-receive latency; baseline: the same load processes against bare uWS pub/sub.
 *
 * The path (`path`): by default the signaling WebSocket with the client library's ChatClient,
 * as the web app chats (edge -> ChatService -> PostgreSQL -> bus -> every edge -> sockets);
 * `grpc` drives the control plane's ChatService directly instead. The result says which.
 */
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { z } from 'zod';
import { ChatServiceClient, type CreateRoomResponse } from '../../proto/gen/veza/chat/chat.js';
import { ChatClient as SignalingChat, SignalingConnection } from '../../signaling/client/index.js';
import { ChildRpc } from '../lib/ipc.js';
import { busyPercent, machineCpuTimes, processTree, totalCpuSeconds } from '../lib/proc.js';
import type { Progress } from '../lib/progress.js';
import { type BenchUser, createUser, signalingWsUrl } from '../lib/rest.js';
import { ratio, type ScenarioOutput } from '../lib/results.js';
import { type CdfPoints, LogHistogram, type PercentilesWithMax, round } from '../lib/stats.js';
import { openPlatform, SERVER_HOST, type TargetOptions } from '../lib/target.js';
import { nodeWebSocket } from '../lib/ws.js';
import type { RunParams, SetupParams } from './clients.js';
import type { ChatMode, ClientSpec } from './transports.js';

const CLIENTS = new URL('./clients.ts', import.meta.url);

export interface ChatOptions {
  path: 'ws' | 'grpc';
  clients: number;
  rooms: number;
  ratePerClient: number;
  durationS: number;
  perProcess: number;
  drainS: number;
  baseline: boolean;
  target: TargetOptions;
}

export interface ChatStep {
  path: string;
  clients: number;
  rooms: number;
  rate_per_client: number;
  joined: number;
  sent: number;
  acked: number;
  deliveries: number;
  /** Every sent message to every client of its room. */
  expected_deliveries: number;
  delivered_pct: number;
  deliveries_per_s: number;
  acks_per_s: number;
  /** First send to last counted delivery: the time the deliveries took. */
  delivery_span_s: number;
  send_to_receive_ms: PercentilesWithMax;
  ack_ms: PercentilesWithMax;
  server_cpu_pct: number | null;
  loadgen_cpu_pct: number;
  machine_busy_pct: number;
  errors: string[];
  cdf: { send_to_receive_ms: CdfPoints };
}

const histogram = z.object({
  buckets: z.array(z.tuple([z.number(), z.number()])),
  count: z.number(),
  max: z.number(),
});
const setupResult = z.object({ joined: z.number().int(), errors: z.array(z.string()) });
const runResult = z.object({
  sent: z.number().int(),
  acked: z.number().int(),
  deliveries: z.number().int(),
  strays: z.number().int(),
  sendingS: z.number(),
  /** From the first send to the last delivery (ack) counted before the cut-off. */
  deliverySpanS: z.number(),
  ackSpanS: z.number(),
  ack: histogram,
  delivery: histogram,
  errors: z.array(z.string()),
  cpuSeconds: z.number(),
});

function unary<Res>(
  invoke: (callback: (error: ServiceError | null, response: Res) => void) => void,
): Promise<Res> {
  return new Promise((resolve, reject) =>
    invoke((error, response) => (error ? reject(error) : resolve(response))),
  );
}

/** Rooms made by `owner` over the signaling WebSocket (chat.createRoom), as a user would. */
async function createRoomsOverWs(url: string, owner: BenchUser, count: number): Promise<number[]> {
  const connection = new SignalingConnection({
    url,
    token: owner.accessToken,
    WebSocket: nodeWebSocket(),
    reconnect: false,
  });
  const chat = new SignalingChat({ connection });
  try {
    await connection.connect();
    const rooms: number[] = [];
    for (let i = 0; i < count; i++)
      rooms.push((await chat.createRoom(`bench room ${i + 1}`, { description: 'chat benchmark' })).roomId);
    return rooms;
  } finally {
    chat.close();
    connection.close();
  }
}

async function createRooms(address: string, owner: BenchUser, count: number): Promise<number[]> {
  const client = new ChatServiceClient(address, credentials.createInsecure());
  const metadata = new Metadata();
  metadata.set('authorization', `Bearer ${owner.accessToken}`);
  try {
    const rooms: number[] = [];
    for (let i = 0; i < count; i++) {
      const reply = await unary<CreateRoomResponse>((cb) =>
        client.createRoom(
          { name: `bench room ${i + 1}`, description: 'chat benchmark', isPrivate: false },
          metadata,
          cb,
        ),
      );
      if (!reply.room) throw new Error('CreateRoom returned no room');
      rooms.push(reply.room.roomId);
    }
    return rooms;
  } finally {
    client.close();
  }
}

/** Registers `count` users, a few at a time (password hashing is deliberately slow). */
async function createUsers(baseUrl: string, count: number, progress: Progress): Promise<BenchUser[]> {
  const users: BenchUser[] = [];
  const parallel = 4;
  for (let i = 0; i < count; i += parallel) {
    users.push(
      ...(await Promise.all(
        Array.from({ length: Math.min(parallel, count - i) }, () => createUser(baseUrl, 'chat')),
      )),
    );
    if (users.length % 100 === 0) progress.note(`  ${users.length} of ${count} users`);
  }
  return users;
}

async function measure(
  mode: ChatMode,
  address: string,
  specs: ClientSpec[],
  options: ChatOptions,
  serverPid: number | null,
  progress: Progress,
): Promise<ChatStep> {
  const processes: ChildRpc[] = [];
  const errors = new Set<string>();
  try {
    let joined = 0;
    for (let i = 0; i < specs.length; i += options.perProcess) {
      const rpc = new ChildRpc(CLIENTS, [], {
        onOutput: (line) => progress.child(`chat-clients-${processes.length}`, line),
      });
      processes.push(rpc);
      const setup: SetupParams = { mode, address, clients: specs.slice(i, i + options.perProcess) };
      const result = await rpc.request('setup', setup, setupResult);
      joined += result.joined;
      for (const error of result.errors) errors.add(error);
    }
    // StreamMessages has no "subscribed" reply: give the subscriptions a moment to reach the bus.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    progress.note(`${mode}: ${joined} clients joined; sending for ${options.durationS} s`);
    const tree = serverPid === null ? [] : processTree(serverPid);
    const server0 = totalCpuSeconds(tree);
    const machine0 = machineCpuTimes();
    const t0 = performance.now();
    const run: RunParams = {
      ratePerClient: options.ratePerClient,
      durationS: options.durationS,
      drainS: options.drainS,
    };
    const results = await Promise.all(processes.map((rpc) => rpc.request('run', run, runResult)));
    const wallS = (performance.now() - t0) / 1000;
    const machineBusy = busyPercent(machine0, machineCpuTimes());
    const serverCpu = serverPid === null ? null : round((100 * (totalCpuSeconds(tree) - server0)) / wallS, 1);
    const delivery = new LogHistogram();
    const ack = new LogHistogram();
    for (const r of results) {
      delivery.merge(r.delivery);
      ack.merge(r.ack);
      for (const error of r.errors) errors.add(error);
    }
    const sum = (pick: (r: z.infer<typeof runResult>) => number) => results.reduce((a, r) => a + pick(r), 0);
    const sent = sum((r) => r.sent);
    const acked = sum((r) => r.acked);
    const deliveries = sum((r) => r.deliveries);
    // Every client of a room receives every message sent to it (its own included).
    // Every message sent reaches every client of its room (its sender included) when all goes
    // well; a refused, timed-out or late message shows as missing. (A send whose ack timed out
    // may still have been stored and delivered, so acks are not the base.)
    const membersPerRoom = joined / options.rooms;
    const expected = Math.round(sent * membersPerRoom);
    // Throughput over the time it took, not over the sending window: a backlog lowers it.
    const deliverySpanS = Math.max(options.durationS, ...results.map((r) => r.deliverySpanS));
    const ackSpanS = Math.max(options.durationS, ...results.map((r) => r.ackSpanS));
    return {
      path:
        mode === 'ws'
          ? 'signaling WebSocket (ChatClient): chat.join, chat.send (the ack), chat.message notifications; edge -> ChatService (moderation, PostgreSQL) -> bus -> edge -> sockets'
          : mode === 'grpc'
            ? 'gRPC ChatService: JoinRoom, StreamMessages (one server stream per client), SendMessage (the ack), moderation and PostgreSQL storage included'
            : 'bare uWS: JSON frame -> app.publish to the room topic + ack to the sender',
      clients: specs.length,
      rooms: options.rooms,
      rate_per_client: options.ratePerClient,
      joined,
      sent,
      acked,
      deliveries,
      expected_deliveries: expected,
      delivered_pct: expected > 0 ? round((100 * deliveries) / expected, 2) : 0,
      deliveries_per_s: round(deliveries / deliverySpanS, 0),
      acks_per_s: round(acked / ackSpanS, 1),
      delivery_span_s: round(deliverySpanS, 2),
      send_to_receive_ms: delivery.summary(),
      ack_ms: ack.summary(),
      server_cpu_pct: serverCpu,
      loadgen_cpu_pct: round((100 * sum((r) => r.cpuSeconds)) / wallS, 1),
      machine_busy_pct: round(machineBusy, 1),
      errors: [...errors].slice(0, 10),
      cdf: { send_to_receive_ms: delivery.cdf() },
    };
  } finally {
    await Promise.all(processes.map((rpc) => rpc.close()));
  }
}

const portReady = z.object({ pid: z.number().int(), port: z.number().int() });

export async function chatScenario(options: ChatOptions, progress: Progress): Promise<ScenarioOutput> {
  const target = await openPlatform(options.target, progress);
  let measured: ChatStep;
  let bare: ChatStep | null = null;
  try {
    progress.note(`creating ${options.clients} users and ${options.rooms} room(s)`);
    const users = await createUsers(target.baseUrl, options.clients, progress);
    const owner = users[0];
    if (!owner) throw new Error('no clients');
    const wsUrl = signalingWsUrl(target.baseUrl);
    const rooms =
      options.path === 'ws'
        ? await createRoomsOverWs(wsUrl, owner, options.rooms)
        : await createRooms(target.grpcAddress, owner, options.rooms);
    const specs = users.map((user, i) => ({ token: user.accessToken, roomId: rooms[i % rooms.length] ?? 0 }));
    measured =
      options.path === 'ws'
        ? await measure('ws', wsUrl, specs, options, target.serverPid, progress)
        : await measure('grpc', target.grpcAddress, specs, options, target.serverPid, progress);
    progress.note(
      `platform: ${measured.deliveries_per_s} deliveries/s, p50 ${measured.send_to_receive_ms.p50} ms, p99 ${measured.send_to_receive_ms.p99} ms, ${measured.acks_per_s} acks/s`,
    );
  } finally {
    await target.close();
  }
  if (options.baseline) {
    const host = new ChildRpc(SERVER_HOST, [], { onOutput: (line) => progress.child('bare-uws', line) });
    try {
      const ready = await host.request('bareUws', {}, portReady);
      const specs = Array.from({ length: options.clients }, (_, i) => ({
        token: '',
        roomId: (i % options.rooms) + 1,
      }));
      bare = await measure('bare-uws', `ws://127.0.0.1:${ready.port}`, specs, options, ready.pid, progress);
      progress.note(
        `baseline: ${bare.deliveries_per_s} deliveries/s, p50 ${bare.send_to_receive_ms.p50} ms, p99 ${bare.send_to_receive_ms.p99} ms`,
      );
    } finally {
      await host.close();
    }
  }
  return {
    measured: `Chat through the whole path: C clients (each its own account) in R rooms sending M messages/s each. Path measured: ${measured.path}. Baseline: the same load processes against bare uWS app.publish.`,
    options: {
      clients: options.clients,
      rooms: options.rooms,
      rate_per_client: options.ratePerClient,
      per_process: options.perProcess,
      drain_s: options.drainS,
      path: options.path === 'ws' ? 'signaling-websocket' : 'grpc-chat-service',
      url: options.target.url ?? null,
      platform: target.settings,
    },
    steps: [measured],
    baseline: bare
      ? {
          system: 'bare-uws',
          description:
            'uWebSockets.js on the same machine: each client subscribed to its room topic; a frame is published with app.publish and acknowledged to its sender. No auth, moderation, storage or bus.',
          steps: [bare],
          ratios: [
            {
              clients: options.clients,
              deliveries_per_s: ratio(measured.deliveries_per_s, bare.deliveries_per_s),
              send_to_receive_p50: ratio(measured.send_to_receive_ms.p50, bare.send_to_receive_ms.p50),
              send_to_receive_p99: ratio(measured.send_to_receive_ms.p99, bare.send_to_receive_ms.p99),
              acks_per_s: ratio(measured.acks_per_s, bare.acks_per_s),
            },
          ],
        }
      : null,
    targets: [
      {
        name: 'chat deliveries/s',
        target: '>= 100,000/s',
        value: measured.deliveries_per_s,
        met: measured.deliveries_per_s >= 100_000,
      },
      {
        name: 'chat send-to-receive p99 (ms)',
        target: '< 50 ms',
        value: Number.isFinite(measured.send_to_receive_ms.p99) ? measured.send_to_receive_ms.p99 : null,
        met: Number.isFinite(measured.send_to_receive_ms.p99) ? measured.send_to_receive_ms.p99 < 50 : null,
      },
    ],
    notes: [
      'The chat rate limits (6 messages per 5 s and 30 per minute per user and room) cap M at 0.5 messages/s per client: throughput comes from fan-out (deliveries = messages x room size), so C and R set it.',
      'Deliveries count every client of the room, the sender included (both paths deliver the sender its own message).',
      'Clients send for --duration, then count for --drain more seconds and stop: later acks and deliveries count as missing (delivered_pct < 100); deliveries/s is taken over first send to last counted delivery.',
    ],
    charts: [
      {
        title: 'Send-to-receive CDF',
        xLabel: 'ms (log)',
        yLabel: 'fraction of deliveries',
        logX: true,
        yRange: [0, 1],
        series: [
          {
            name: options.path === 'ws' ? 'platform (WebSocket chat)' : 'platform (gRPC ChatService)',
            points: measured.cdf.send_to_receive_ms,
          },
          ...(bare ? [{ name: 'bare uWS publish', dashed: true, points: bare.cdf.send_to_receive_ms }] : []),
        ],
      },
    ],
  };
}
