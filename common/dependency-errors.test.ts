/**
 * What counts as "a dependency is down" (→ unavailable, 503) rather than a bug (→ internal), on
 * real errors: a refused TCP connection, and PostgreSQL refusing connections while it shuts down.
 */
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, UnavailableError, type VezaError } from './contracts/index.js';
import { asDependencyFailure, DEPENDENCY_DOWN } from './dependency-errors.js';
import { freePort } from './testing/index.js';

function refusedConnection(port: number): Promise<Error> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('error', resolve);
  });
}

describe('asDependencyFailure', () => {
  it('turns a refused connection into unavailable, with the reason the edge breaker counts', async () => {
    const refused = await refusedConnection(await freePort());
    const mapped = asDependencyFailure(refused) as VezaError;
    expect(mapped).toBeInstanceOf(UnavailableError);
    expect(mapped.details.reason).toBe(DEPENDENCY_DOWN);
    expect(mapped.message).not.toMatch(/127\.0\.0\.1/);
    // Wrapped once more (a driver's own error with the socket error as its cause).
    expect(asDependencyFailure(new Error('query failed', { cause: refused }))).toBeInstanceOf(
      UnavailableError,
    );
  });

  it('recognises PostgreSQL shutting down and Redis without a connection', () => {
    const shutdown = Object.assign(new Error('terminating connection due to administrator command'), {
      code: '57P01',
    });
    expect(asDependencyFailure(shutdown)).toBeInstanceOf(UnavailableError);
    const redis = new Error("Stream isn't writeable and enableOfflineQueue options is false");
    expect(asDependencyFailure(redis)).toBeInstanceOf(UnavailableError);
  });

  it('leaves bugs and Veza errors alone', () => {
    const bug = new TypeError('cannot read properties of undefined');
    expect(asDependencyFailure(bug)).toBe(bug);
    const unique = Object.assign(new Error('duplicate key'), { code: '23505' });
    expect(asDependencyFailure(unique)).toBe(unique);
    const invalid = new InvalidArgumentError('bad title', 'title');
    expect(asDependencyFailure(invalid)).toBe(invalid);
  });
});
