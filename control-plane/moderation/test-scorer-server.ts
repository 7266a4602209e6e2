/**
 * A real local HTTP moderation service for tests (imported by *.test.ts only): it answers
 * POST {text} with {score, reasons}, and can be told to fail, to hang, or be stopped.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type ScorerMode = 'ok' | 'error' | 'hang';

export interface TestScorerServer {
  url: string;
  mode: ScorerMode;
  /** Requests received, in order. */
  texts: string[];
  /** Stops listening and cuts open connections: calls then fail with a refused connection. */
  stop(): Promise<void>;
}

/** Scores "toxic-for-the-service" words 0.95 and anything else 0.05. */
function answer(text: string): { score: number; reasons: string[] } {
  return /\bbanana\b/i.test(text)
    ? { score: 0.95, reasons: ['external: fruit abuse'] }
    : { score: 0.05, reasons: [] };
}

export async function startTestScorer(): Promise<TestScorerServer> {
  const hanging = new Set<ServerResponse>();
  const state: TestScorerServer = {
    url: '',
    mode: 'ok',
    texts: [],
    stop: async () => {},
  };
  const server: Server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as { text?: string };
      state.texts.push(body.text ?? '');
      if (state.mode === 'hang') {
        hanging.add(response);
        return;
      }
      if (state.mode === 'error') {
        response.writeHead(503, { 'content-type': 'application/json' }).end('{"error":"overloaded"}');
        return;
      }
      response
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify(answer(body.text ?? '')));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  state.url = `http://127.0.0.1:${port}/score`;
  let stopped: Promise<void> | undefined;
  state.stop = () => {
    stopped ??= new Promise<void>((resolve) => {
      for (const response of hanging) response.destroy();
      server.close(() => resolve());
      server.closeAllConnections();
    });
    return stopped;
  };
  return state;
}
