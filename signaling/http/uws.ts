/**
 * The uWebSockets.js binding, checked. The npm build we use silently falls back to a
 * JavaScript implementation when its native binary fails to load, and that fallback hung
 * under load; an edge that is not native must not start at all.
 */
import uWS from 'uWebSockets.js';

export type {
  HttpRequest,
  HttpResponse,
  MultipartField,
  TemplatedApp,
  us_listen_socket,
  WebSocket,
  WebSocketBehavior,
} from 'uWebSockets.js';

type UwsModule = typeof uWS;

export class UwsNotNativeError extends Error {
  override readonly name = 'UwsNotNativeError';
}

/** Throws unless `module` is the native addon (its functions are native code; the fallback's are JavaScript). */
export function assertNativeUws(module: Partial<Record<keyof UwsModule, unknown>> = uWS): void {
  const isNative = (value: unknown) =>
    typeof value === 'function' && Function.prototype.toString.call(value).includes('[native code]');
  const missing = (['App', 'getParts', 'us_listen_socket_close', 'us_socket_local_port'] as const).filter(
    (name) => !isNative(module[name]),
  );
  if (missing.length > 0) {
    throw new UwsNotNativeError(
      `uWebSockets.js is not running its native binary (${missing.join(', ')} not native): ` +
        `no build for ${process.platform}-${process.arch} Node ABI ${process.versions.modules}, ` +
        'or UWS_USE_FALLBACK is set. The JavaScript fallback is not fit for production; refusing to start.',
    );
  }
}

export function createUwsApp(): uWS.TemplatedApp {
  assertNativeUws();
  return uWS.App();
}

export function listen(app: uWS.TemplatedApp, host: string, port: number): Promise<uWS.us_listen_socket> {
  return new Promise((resolve, reject) => {
    app.listen(host, port, (socket) => {
      if (socket) resolve(socket);
      else reject(new Error(`could not listen on ${host}:${port} (address in use or not available)`));
    });
  });
}

export const localPort = (socket: uWS.us_listen_socket): number => uWS.us_socket_local_port(socket);
export const closeListenSocket = (socket: uWS.us_listen_socket): void => uWS.us_listen_socket_close(socket);

/** Closes every socket of the app, idle keep-alive connections included (native only, absent from the typings). */
export function closeAllSockets(app: uWS.TemplatedApp): void {
  const closable = app as uWS.TemplatedApp & { close?: () => void };
  closable.close?.();
}

export function getParts(body: ArrayBuffer, contentType: string): uWS.MultipartField[] | undefined {
  return uWS.getParts(body, contentType);
}
