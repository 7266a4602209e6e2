/**
 * The email outbox and its dispatcher, against PostgreSQL and, for the SMTP path, a
 * minimal SMTP server speaking just enough of RFC 5321 for nodemailer.
 */
import { once } from 'node:events';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../common/testing/index.js';
import { captureLogs } from '../test-harness.js';
import { createMailer } from './mailer.js';
import { enqueueEmail, startOutboxDispatcher } from './outbox.js';

interface ReceivedMail {
  from: string;
  to: string[];
  data: string;
}

/** Accepts mail (or refuses every recipient when `refuse` is set) and reports each message. */
class TinySmtpServer {
  readonly received: ReceivedMail[] = [];
  refuse = false;
  private readonly server = net.createServer((socket) => this.session(socket));
  private waiters: Array<() => void> = [];

  async listen(): Promise<number> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    return (this.server.address() as net.AddressInfo).port;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  /** Resolves once `count` messages have arrived in total. */
  async waitForMessages(count: number): Promise<void> {
    while (this.received.length < count) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  private session(socket: net.Socket) {
    let buffer = '';
    let inData = false;
    let mail: ReceivedMail = { from: '', to: [], data: '' };
    const reply = (line: string) => socket.write(`${line}\r\n`);
    reply('220 tiny.test ESMTP');
    socket.on('data', (chunk) => {
      buffer += chunk.toString('utf8');
      let end = buffer.indexOf('\r\n');
      while (end >= 0) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        end = buffer.indexOf('\r\n');
        if (inData) {
          if (line === '.') {
            inData = false;
            this.received.push(mail);
            mail = { from: '', to: [], data: '' };
            reply('250 2.0.0 queued');
            for (const waiter of this.waiters.splice(0)) waiter();
          } else mail.data += `${line.startsWith('..') ? line.slice(1) : line}\n`;
          continue;
        }
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === 'EHLO' || verb === 'HELO') reply('250 tiny.test');
        else if (verb === 'MAIL') {
          mail.from = line;
          reply('250 2.1.0 ok');
        } else if (verb === 'RCPT') {
          if (this.refuse) reply('550 5.1.1 mailbox unavailable');
          else {
            mail.to.push(line);
            reply('250 2.1.5 ok');
          }
        } else if (verb === 'DATA') {
          inData = true;
          reply('354 go ahead');
        } else if (verb === 'RSET') reply('250 ok');
        else if (verb === 'QUIT') {
          reply('221 bye');
          socket.end();
        } else reply('502 not implemented');
      }
    });
    socket.on('error', () => {});
  }
}

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase('embedded');
});
afterAll(() => db?.drop());

async function rowsById(ids: number[]) {
  return db.sql<
    { id: number; status: string; attempts: number; last_error: string | null; sent_at: Date | null }[]
  >`
    select id, status, attempts, last_error, sent_at from email_outbox where id = any(${db.sql.array(ids)}::bigint[]) order by id`;
}

const email = (n: number) => ({
  to: `person${n}@example.com`,
  subject: `Confirm ${n}`,
  text: `Open http://veza.test/auth/confirm?token=tok${n} to confirm.`,
  kind: 'email_confirmation',
});

describe('outbox without SMTP_URL', () => {
  it('logs the message with its link, marks it logged and keeps it in the outbox', async () => {
    const logs = captureLogs();
    const id = await enqueueEmail(db.sql, email(1));
    const dispatcher = startOutboxDispatcher({
      sql: db.sql,
      mailer: createMailer({ SMTP_URL: undefined, MAIL_FROM: 'Veza <no-reply@veza.test>' }, logs.log),
      log: logs.log,
      pollIntervalMs: 3_600_000,
    });
    try {
      await dispatcher.runOnce();
      const [row] = await rowsById([id]);
      expect(row).toMatchObject({ status: 'logged', attempts: 1, last_error: null });
      expect(row?.sent_at).toBeInstanceOf(Date);
      const [kept] = await db.sql<
        { body_text: string }[]
      >`select body_text from email_outbox where id = ${id}`;
      expect(kept?.body_text).toContain('http://veza.test/auth/confirm?token=tok1');
      const line = logs.lines.find((entry) => entry.to === 'person1@example.com');
      expect(line).toMatchObject({ level: 30, subject: 'Confirm 1' });
      expect(String(line?.body)).toContain('http://veza.test/auth/confirm?token=tok1');
      // Delivered rows are not picked up again.
      expect(await dispatcher.runOnce()).toBe(0);
    } finally {
      await dispatcher.stop();
    }
  });
});

describe('outbox over SMTP', () => {
  let smtp: TinySmtpServer;
  let smtpUrl: string;
  beforeAll(async () => {
    smtp = new TinySmtpServer();
    smtpUrl = `smtp://127.0.0.1:${await smtp.listen()}`;
  });
  afterAll(() => smtp?.close());

  /** A dispatcher whose start-up pass is over, so each test's passes are the ones it runs. */
  const dispatcherFor = async (pollIntervalMs = 3_600_000, maxAttempts = 5) => {
    const logs = captureLogs();
    const dispatcher = startOutboxDispatcher({
      sql: db.sql,
      mailer: createMailer({ SMTP_URL: smtpUrl, MAIL_FROM: 'Veza Live <no-reply@veza.test>' }, logs.log),
      log: logs.log,
      pollIntervalMs,
      maxAttempts,
    });
    await dispatcher.runOnce();
    return dispatcher;
  };

  it('sends on wake without waiting for the next poll, and marks the row sent', async () => {
    const dispatcher = await dispatcherFor();
    try {
      const already = smtp.received.length;
      const id = await enqueueEmail(db.sql, email(2));
      dispatcher.wake();
      await smtp.waitForMessages(already + 1);
      const mail = smtp.received[already];
      expect(mail?.from).toContain('<no-reply@veza.test>');
      expect(mail?.to).toEqual(['RCPT TO:<person2@example.com>']);
      expect(mail?.data).toContain('Subject: Confirm 2');
      expect(mail?.data).toContain('http://veza.test/auth/confirm?token=tok2');
      await dispatcher.runOnce();
      expect((await rowsById([id]))[0]).toMatchObject({ status: 'sent', attempts: 1 });
    } finally {
      await dispatcher.stop();
    }
  });

  it('keeps a refused message pending with the error, then gives up after the last attempt', async () => {
    const dispatcher = await dispatcherFor(3_600_000, 2);
    smtp.refuse = true;
    try {
      const id = await enqueueEmail(db.sql, email(3));
      await dispatcher.runOnce();
      const [first] = await rowsById([id]);
      expect(first).toMatchObject({ status: 'pending', attempts: 1, sent_at: null });
      expect(first?.last_error).toMatch(/550/);
      await dispatcher.runOnce();
      expect((await rowsById([id]))[0]).toMatchObject({ status: 'failed', attempts: 2 });
      // Failed rows are left alone.
      smtp.refuse = false;
      await dispatcher.runOnce();
      expect((await rowsById([id]))[0]).toMatchObject({ status: 'failed', attempts: 2 });
    } finally {
      smtp.refuse = false;
      await dispatcher.stop();
    }
  });

  it('lets several dispatchers share the outbox without sending a message twice', async () => {
    const dispatchers = await Promise.all([dispatcherFor(), dispatcherFor(), dispatcherFor()]);
    try {
      const already = smtp.received.length;
      const ids: number[] = [];
      for (let n = 100; n < 150; n++) ids.push(await enqueueEmail(db.sql, email(n)));
      await Promise.all(dispatchers.map((dispatcher) => dispatcher.runOnce()));
      const rows = await rowsById(ids);
      expect(rows.every((row) => row.status === 'sent' && row.attempts === 1)).toBe(true);
      const recipients = smtp.received.slice(already).flatMap((mail) => mail.to);
      expect(recipients).toHaveLength(50);
      expect(new Set(recipients).size).toBe(50);
    } finally {
      await Promise.all(dispatchers.map((dispatcher) => dispatcher.stop()));
    }
  });
});
