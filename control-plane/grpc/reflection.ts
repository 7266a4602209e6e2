/**
 * Server reflection (grpc.reflection.v1 and v1alpha) over the platform's own .proto
 * files, so grpcurl-style tools list and call the services without local copies.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { protoPath as healthProtoPath } from 'grpc-health-check';

export const PROTO_ROOT = path.resolve(import.meta.dirname, '../../proto');

/** Every .proto under proto/veza, relative to PROTO_ROOT (their import root). */
export function vezaProtoFiles(root = PROTO_ROOT): string[] {
  return readdirSync(path.join(root, 'veza'), { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.proto'))
    .map((file) => path.join('veza', file))
    .sort();
}

export function loadVezaPackageDefinition(root = PROTO_ROOT): PackageDefinition {
  // The health service is described too, as grpc-go's reflection would list it.
  const healthRoot = path.resolve(path.dirname(healthProtoPath), '../..');
  return loadSync([...vezaProtoFiles(root), 'health/v1/health.proto'], {
    includeDirs: [root, healthRoot],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
}

export function createReflectionService(root = PROTO_ROOT): ReflectionService {
  return new ReflectionService(loadVezaPackageDefinition(root));
}
