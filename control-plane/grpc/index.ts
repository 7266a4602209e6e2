/** The gRPC machinery of the control plane: the call wrapper, caller authentication and the server. */
export type { AuthenticatedUser, CallContext } from './context.js';
export { followDependencies, SERVICE_DEPENDENCIES } from './dependency-health.js';
export { createHealthService, type HealthService } from './health.js';
export { type HealthControl, type RunningGrpcServer, startGrpcServer } from './server.js';
export { bindService, type ServiceBinding, type ServiceImplementation } from './wrap-service.js';
