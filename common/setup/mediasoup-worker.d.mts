/** Types for mediasoup-worker.mjs (plain JS: it runs before npm dependencies exist). */
export function mediasoupWorkerPath(): string;
export function ensureMediasoupWorker(options?: { log?: (line: string) => void }): Promise<string>;
export function verifyIntegrity(tarball: string, lockfile?: string): void;
