/** What the rest of the edge sees of a connection's chat: its requests and its end. */
import type { ChatMethod, MethodParams, MethodResults } from '../../protocol/index.js';

/**
 * The chat methods a chat session answers: `auth.refresh` is listed with them in the protocol
 * but replaces the connection's token for media and chat alike (../token-lifetime.ts).
 */
export type ChatSessionMethod = Exclude<ChatMethod, 'auth.refresh'>;

export interface ChatRequests {
  /** Answers one chat, notification or moderation request of the connection. */
  handle<M extends ChatSessionMethod>(method: M, params: MethodParams[M]): Promise<MethodResults[M]>;
  /** The socket is gone: leave its rooms on this edge (not the memberships) and stop its deliveries. */
  closed(): Promise<void>;
}
