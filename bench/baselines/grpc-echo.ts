/**
 * The grpc baseline: a bare @grpc/grpc-js server that answers the same methods with a fixed
 * response (one recorded from the platform, so the bytes on the wire are the same size), with
 * no interceptors, no auth, no database. The platform's figures against these show what its
 * handlers, interceptors and storage cost on top of grpc-js itself.
 */
import { type handleUnaryCall, Server, ServerCredentials } from '@grpc/grpc-js';
import {
  AuthServiceService,
  type ValidateTokenRequest,
  type ValidateTokenResponse,
} from '../../proto/gen/veza/auth/auth.js';
import {
  ChatServiceService,
  type GetMessagesRequest,
  type GetMessagesResponse,
} from '../../proto/gen/veza/chat/chat.js';

export interface EchoResponses {
  validateToken: ValidateTokenResponse;
  getMessages: GetMessagesResponse;
}

export async function startGrpcEcho(
  responses: EchoResponses,
): Promise<{ port: number; close(): Promise<void> }> {
  const server = new Server();
  const validateToken: handleUnaryCall<ValidateTokenRequest, ValidateTokenResponse> = (_call, callback) =>
    callback(null, responses.validateToken);
  const getMessages: handleUnaryCall<GetMessagesRequest, GetMessagesResponse> = (_call, callback) =>
    callback(null, responses.getMessages);
  server.addService({ validateToken: AuthServiceService.validateToken }, { validateToken });
  server.addService({ getMessages: ChatServiceService.getMessages }, { getMessages });
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(error) : resolve(bound),
    );
  });
  return {
    port,
    close: () => new Promise((resolve) => server.tryShutdown(() => resolve())),
  };
}
