/**
 * Sends one email. With SMTP_URL set it goes out through nodemailer; without it (a
 * standalone machine usually has no mail server) the message is logged so the
 * confirmation link can be followed, and it stays in the outbox.
 */
import nodemailer from 'nodemailer';
import type { Config, Logger } from '../../common/index.js';

export interface OutgoingEmail {
  to: string;
  subject: string;
  text: string;
}

/** `sent`: handed to the SMTP server; `logged`: written to the log only. */
export type Delivery = 'sent' | 'logged';

export interface Mailer {
  readonly transport: 'smtp' | 'log';
  send(email: OutgoingEmail): Promise<Delivery>;
  close(): void;
}

export function createMailer(config: Pick<Config, 'SMTP_URL' | 'MAIL_FROM'>, log: Logger): Mailer {
  if (!config.SMTP_URL) {
    return {
      transport: 'log',
      async send(email) {
        log.info(
          { to: email.to, subject: email.subject, body: email.text },
          'email not sent (SMTP_URL is not set); its text, with any link, stays in the outbox',
        );
        return 'logged';
      },
      close() {},
    };
  }
  const transporter = nodemailer.createTransport(config.SMTP_URL);
  return {
    transport: 'smtp',
    async send(email) {
      await transporter.sendMail({
        from: config.MAIL_FROM,
        to: email.to,
        subject: email.subject,
        text: email.text,
      });
      return 'sent';
    },
    close: () => transporter.close(),
  };
}
