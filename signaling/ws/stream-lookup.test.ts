/**
 * The edge's memory of what joins need (stream-lookup.ts) against the real control plane: the
 * control plane's visibility rules applied from memory, one GetStreamInfo for a stream it has
 * not heard of, and a background re-check that corrects what a lost bus event left wrong.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SignalingStack, startSignalingStack, type TestUser } from '../../app/testing/index.js';
import type { StreamStartedEvent } from '../../common/contracts/index.js';
import type { UserRole } from '../../common/index.js';
import { StreamLookup } from './stream-lookup.js';

/** The bus saw nothing end or move: what a lookup knows is only what it was told. */
const NO_FATES = { isEnded: () => false, movedTo: () => undefined };

const authOf = (user: TestUser, roles: UserRole[] = ['listener']) => ({
  kind: 'user' as const,
  userId: user.userId,
  roles,
  token: user.token,
  expiresAt: Date.now() + 10 * 60_000,
});

describe('StreamLookup', () => {
  let stack: SignalingStack;
  let owner: TestUser;
  let fan: TestUser;

  beforeAll(async () => {
    stack = await startSignalingStack();
    [owner, fan] = await Promise.all([stack.createUser(), stack.createUser()]);
  });
  afterAll(async () => {
    await stack?.close();
  });

  /** stream.started for a stream, as the control plane published it. */
  async function startedEvent(streamId: number): Promise<StreamStartedEvent> {
    const info = (await stack.client.stream.getStreamInfo({ streamId }, { token: owner.token })).stream!;
    return {
      stream_id: info.streamId,
      owner_id: info.ownerId,
      owner_username: info.ownerUsername,
      title: info.title,
      chat_room_id: info.chatRoomId,
      media_node_id: info.mediaNodeId || null,
      is_public: info.isPublic,
      allow_anonymous: info.allowAnonymous,
      started_at: new Date().toISOString(),
    };
  }

  it('applies the control plane rules from memory: a private stream for its owner and moderators only', async () => {
    const streamId = await stack.startStream(owner, { isPublic: false });
    const lookup = new StreamLookup({ controlPlane: stack.client, fates: NO_FATES });
    lookup.started(await startedEvent(streamId));
    await expect(lookup.streamMeta(authOf(fan), streamId)).rejects.toMatchObject({
      code: 'not_found',
      message: `stream ${streamId} not found`,
    });
    await expect(lookup.streamMeta(authOf(fan, ['listener', 'moderator']), streamId)).resolves.toMatchObject({
      status: 'live',
      isPublic: false,
    });
    await expect(lookup.streamMeta(authOf(owner), streamId)).resolves.toMatchObject({
      ownerId: owner.userId,
    });
    const anonymous = {
      kind: 'listener' as const,
      userId: 0,
      roles: [],
      token: null,
      expiresAt: Date.now() + 60_000,
    };
    await expect(lookup.streamMeta(anonymous, streamId)).rejects.toMatchObject({ code: 'not_found' });
    expect(lookup.misses).toBe(0);
  });

  it('asks the control plane once for a stream it has not heard of, and remembers the answer', async () => {
    const streamId = await stack.startStream(owner);
    const lookup = new StreamLookup({ controlPlane: stack.client, fates: NO_FATES });
    const [first, second] = await Promise.all([
      lookup.streamMeta(authOf(fan), streamId),
      lookup.streamMeta(authOf(owner), streamId),
    ]);
    expect(first).toMatchObject({ streamId, status: 'live', ownerId: owner.userId });
    expect(second).toEqual(first);
    await lookup.streamMeta(authOf(fan), streamId);
    expect(lookup.misses).toBe(1);
    // Nothing to remember about a stream that does not exist.
    await expect(lookup.streamMeta(authOf(fan), 987_654_321)).rejects.toMatchObject({ code: 'not_found' });
  });

  it('corrects, by asking again in the background, a stream whose end the bus did not deliver', async () => {
    const streamId = await stack.startStream(owner);
    const lookup = new StreamLookup({ controlPlane: stack.client, fates: NO_FATES, revalidateMs: 0 });
    lookup.started(await startedEvent(streamId));
    await stack.stopStream(owner, streamId);
    // No stream.ended reached this lookup: it answers from memory, and checks behind the answer.
    await expect.poll(async () => (await lookup.streamMeta(authOf(fan), streamId)).status).toBe('ended');
  });
});
