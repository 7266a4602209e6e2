/**
 * SIGNING_KEYS_SECRET in the config loader: its accepted forms, cluster mode's requirement,
 * and that neither a config error nor a logged config ever shows a secret's value; and the
 * VEZA_THREADS switch.
 */
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ConfigError, decodeSigningKeysSecret, loadConfig } from './config.js';
import { createLogger } from './log.js';

const cluster = {
  VEZA_MODE: 'cluster',
  DATABASE_URL: 'postgres://veza@db.example/veza',
  REDIS_URL: 'redis://redis.example:6379',
  NATS_URL: 'nats://nats.example:4222',
  SERVICE_API_KEYS: 'a-service-key-of-enough-length',
};

function refusal(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('the configuration was accepted');
}

describe('SIGNING_KEYS_SECRET', () => {
  it('accepts 32 random bytes as hex, base64 or base64url', () => {
    const secret = randomBytes(32);
    for (const text of [
      secret.toString('hex'),
      secret.toString('hex').toUpperCase(),
      secret.toString('base64'),
      secret.toString('base64url'),
      `${secret.toString('base64')}\n`,
    ]) {
      expect(decodeSigningKeysSecret(text)).toEqual(secret);
      expect(loadConfig({ SIGNING_KEYS_SECRET: text }).SIGNING_KEYS_SECRET).toBe(text);
    }
    expect(loadConfig({ SIGNING_KEYS_SECRET: '' }).SIGNING_KEYS_SECRET).toBeUndefined();
  });

  it('refuses anything else naming the variable, never printing the value', () => {
    for (const bad of [
      'correct horse battery staple, a passphrase', // not 32 bytes of key
      randomBytes(16).toString('hex'),
      randomBytes(48).toString('base64'),
      '0'.repeat(64), // a placeholder, not random
      'A'.repeat(43),
    ]) {
      const message = refusal({ SIGNING_KEYS_SECRET: bad });
      expect(message).toMatch(/SIGNING_KEYS_SECRET \(value not shown\): expected 32 random bytes/);
      expect(message).not.toContain(bad);
    }
  });

  it('is required by control planes in cluster mode, not by the other roles', () => {
    expect(refusal(cluster)).toMatch(/VEZA_MODE=cluster needs SIGNING_KEYS_SECRET/);
    expect(refusal({ ...cluster, VEZA_ROLES: 'control-plane' })).toMatch(/needs SIGNING_KEYS_SECRET/);
    const { DATABASE_URL: _omitted, ...withoutDatabase } = cluster;
    expect(refusal(withoutDatabase)).toMatch(/needs DATABASE_URL, SIGNING_KEYS_SECRET/);
    expect(
      loadConfig({ ...cluster, VEZA_ROLES: 'signaling,media,worker' }).SIGNING_KEYS_SECRET,
    ).toBeUndefined();
    const secret = randomBytes(32).toString('base64');
    expect(loadConfig({ ...cluster, SIGNING_KEYS_SECRET: secret }).SIGNING_KEYS_SECRET).toBe(secret);
  });

  it('takes a METRICS_TOKEN of 16 characters or more, refuses a shorter one without showing it, and logs it redacted', () => {
    expect(loadConfig({}).METRICS_TOKEN).toBeUndefined();
    expect(loadConfig({ METRICS_TOKEN: '' }).METRICS_TOKEN).toBeUndefined();
    const token = randomBytes(12).toString('hex');
    expect(loadConfig({ METRICS_TOKEN: token }).METRICS_TOKEN).toBe(token);
    const message = refusal({ METRICS_TOKEN: 'short-token' });
    expect(message).toMatch(/METRICS_TOKEN \(value not shown\): needs at least 16 characters/);
    expect(message).not.toContain('short-token');
    let text = '';
    const log = createLogger({
      level: 'info',
      destination: new Writable({
        write(chunk: Buffer, _encoding, done) {
          text += chunk.toString('utf8');
          done();
        },
      }),
    });
    log.info({ config: loadConfig({ METRICS_TOKEN: token }) }, 'the config');
    expect(text).toContain('"METRICS_TOKEN":"[redacted]"');
    expect(text).not.toContain(token);
  });

  it('never shows the value of other secrets in errors either', () => {
    const message = refusal({ DATABASE_URL: 'not a url with hunter2' });
    expect(message).toMatch(/DATABASE_URL \(value not shown\)/);
    expect(message).not.toContain('hunter2');
    expect(refusal({ HTTP_PORT: 'eighty' })).toMatch(/HTTP_PORT="eighty"/);
  });

  it('is redacted from the logs, also inside a logged config', () => {
    const secret = randomBytes(32).toString('base64');
    let text = '';
    const log = createLogger({
      level: 'info',
      destination: new Writable({
        write(chunk: Buffer, _encoding, done) {
          text += chunk.toString('utf8');
          done();
        },
      }),
    });
    const config = loadConfig({ SIGNING_KEYS_SECRET: secret });
    log.info(config, 'the config, flat');
    log.info({ config }, 'the config, nested');
    log.info({ SIGNING_KEYS_SECRET: secret, signingKeysSecret: secret }, 'the value alone');
    expect(text.split('\n').filter(Boolean)).toHaveLength(3);
    expect(text).not.toContain(secret);
    expect(text).toContain('"SIGNING_KEYS_SECRET":"[redacted]"');
  });
});

describe('VEZA_THREADS', () => {
  it('is on by default, and reads true/false and 1/0, not any other word', () => {
    expect(loadConfig({}).VEZA_THREADS).toBe(true);
    expect(loadConfig({ VEZA_THREADS: 'false' }).VEZA_THREADS).toBe(false);
    expect(loadConfig({ VEZA_THREADS: '0' }).VEZA_THREADS).toBe(false);
    expect(loadConfig({ VEZA_THREADS: '1' }).VEZA_THREADS).toBe(true);
    expect(refusal({ VEZA_THREADS: 'no' })).toMatch(/^invalid configuration: VEZA_THREADS="no": /);
  });
});
