/** The gRPC machinery of the control plane: the call wrapper, caller authentication and the server. */
export type { AuthenticatedUser, AuthPolicy, CallContext, TokenVerifier } from './context.js';
export { loadVezaPackageDefinition, PROTO_ROOT } from './reflection.js';
export {
  type GrpcServerOptions,
  type HealthControl,
  type RunningGrpcServer,
  type ServingStatus,
  startGrpcServer,
} from './server.js';
export {
  type BidiStreamHandler,
  bindService,
  type ClientStreamHandler,
  type MethodImplementation,
  type ServerStreamHandler,
  type ServiceBinding,
  type ServiceImplementation,
  type UnaryHandler,
} from './wrap-service.js';
