/**
 * The calls the grpc scenario makes, on the generated clients (proto/gen), so the platform and
 * the echo baseline are driven by the very same client code.
 */
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { AuthServiceClient, type ValidateTokenResponse } from '../../proto/gen/veza/auth/auth.js';
import { ChatServiceClient, type GetMessagesResponse } from '../../proto/gen/veza/chat/chat.js';

export const GRPC_METHODS = ['ValidateToken', 'GetMessages'] as const;
export type GrpcMethod = (typeof GRPC_METHODS)[number];

export interface CallSpec {
  address: string;
  method: GrpcMethod;
  /** ValidateToken: the token validated. GetMessages: the caller's access token. */
  token: string;
  roomId: number;
  limit: number;
}

export interface Caller {
  call(): Promise<ValidateTokenResponse | GetMessagesResponse>;
  close(): void;
}

function settle<T>(resolve: (value: T) => void, reject: (error: Error) => void) {
  return (error: ServiceError | null, response: T) => (error ? reject(error) : resolve(response));
}

export function caller(spec: CallSpec): Caller {
  const insecure = credentials.createInsecure();
  if (spec.method === 'ValidateToken') {
    const client = new AuthServiceClient(spec.address, insecure);
    return {
      call: () =>
        new Promise<ValidateTokenResponse>((resolve, reject) => {
          client.validateToken({ token: spec.token }, settle(resolve, reject));
        }),
      close: () => client.close(),
    };
  }
  const client = new ChatServiceClient(spec.address, insecure);
  const metadata = new Metadata();
  metadata.set('authorization', `Bearer ${spec.token}`);
  const request = { roomId: spec.roomId, limit: spec.limit, beforeMessageId: 0, afterMessageId: 0 };
  return {
    call: () =>
      new Promise<GetMessagesResponse>((resolve, reject) => {
        client.getMessages(request, metadata, settle(resolve, reject));
      }),
    close: () => client.close(),
  };
}
