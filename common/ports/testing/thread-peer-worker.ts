/**
 * The contract test's other thread: a real ThreadEventBus in a worker thread of its own, on the
 * hub's port it was given. The test's handlers are closures of the test's thread, so each delivery
 * and each call is relayed there and the answer relayed back; the subscriptions, the routing to
 * them and the replies are this thread's, across the hub as a role thread's are.
 */
import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import { createLogger } from '../../log.js';
import { decodeReply, encodeReply, encodeReplyError } from '../bus-wire.js';
import type { Subscription } from '../event-bus.js';
import { ThreadEventBus } from '../thread-event-bus.js';
import type { PeerCommand, PeerEvent } from './thread-peer-messages.js';

const port = parentPort;
if (!port) throw new Error('thread-peer-worker.ts runs as a worker thread');
const bus = new ThreadEventBus((workerData as { port: MessagePort }).port, {
  log: createLogger({ level: 'silent', name: 'thread-peer' }),
});
const subscriptions = new Map<number, Subscription>();
const calls = new Map<number, (text: string) => void>();
let nextCall = 1;
const tell = (event: PeerEvent) => port.postMessage(event);
const failure = (error: unknown) => (error instanceof Error ? error.message : String(error));

function track(id: number, subscription: Subscription): void {
  subscriptions.set(id, subscription);
  subscription.ready.then(
    () => tell({ op: 'ready', id }),
    (error: unknown) => tell({ op: 'ready', id, error: failure(error) }),
  );
}

port.on('message', (command: PeerCommand) => {
  switch (command.op) {
    case 'subscribe':
      track(
        command.id,
        bus.subscribe(command.subject, (payload, subject) =>
          tell({ op: 'delivered', id: command.id, payload, subject }),
        ),
      );
      return;
    case 'respond':
      track(
        command.id,
        bus.respond(command.subject, async (payload, subject) => {
          const callId = nextCall++;
          const text = await new Promise<string>((resolve) => {
            calls.set(callId, resolve);
            tell({ op: 'called', id: command.id, callId, payload, subject });
          });
          // Throws the test responder's VezaError (or `internal`), for this bus to carry on.
          return decodeReply(text, subject);
        }),
      );
      return;
    case 'answer':
      calls.get(command.callId)?.(command.text);
      calls.delete(command.callId);
      return;
    case 'unsubscribe':
      subscriptions.get(command.id)?.unsubscribe();
      subscriptions.delete(command.id);
      return;
    case 'publish':
      bus.publish(command.subject, command.payload).then(
        () => tell({ op: 'done', id: command.id }),
        (error: unknown) => tell({ op: 'done', id: command.id, error: failure(error) }),
      );
      return;
    case 'request':
      bus
        .request(command.subject, command.payload, command.timeoutMs ? { timeoutMs: command.timeoutMs } : {})
        .then(
          (value) => tell({ op: 'done', id: command.id, text: encodeReply(value) }),
          (error: unknown) => tell({ op: 'done', id: command.id, text: encodeReplyError(error) }),
        );
      return;
    case 'close':
      bus.close().then(() => tell({ op: 'done', id: command.id }));
      return;
  }
});
