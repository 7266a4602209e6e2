import { describe, expect, it } from 'vitest';
import { assertNativeUws, createUwsApp, UwsNotNativeError } from './uws.js';

describe('assertNativeUws', () => {
  it('accepts the installed binding (the native addon)', () => {
    expect(() => assertNativeUws()).not.toThrow();
    expect(createUwsApp()).toBeDefined();
  });

  it('refuses the JavaScript fallback loudly', () => {
    // The shape of the package's fallback: same names, plain JavaScript functions, no getParts.
    const fallback = {
      App: () => ({}),
      us_listen_socket_close: () => undefined,
      us_socket_local_port: () => 0,
    };
    expect(() => assertNativeUws(fallback)).toThrow(UwsNotNativeError);
    expect(() => assertNativeUws(fallback)).toThrow(
      /App, getParts, us_listen_socket_close, us_socket_local_port not native/,
    );
  });
});
