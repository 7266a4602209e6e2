/**
 * The account REST flows of the seed (register, login, validate, refresh, logout,
 * profile, email confirmation), each a thin translation to one AuthService rpc. The
 * edge checks the shape of the input; the control plane owns the rules (password
 * policy, username format, uniqueness, rate limits) and its errors pass through as-is.
 */
import { z } from 'zod';
import {
  InvalidArgumentError,
  PayloadTooLargeError,
  toVezaError,
  UnauthenticatedError,
} from '../../../common/contracts/index.js';
import type { UpdateProfileRequest } from '../../../proto/gen/veza/auth/auth.js';
import type { EdgeRequest } from '../context.js';
import { decodeUtf8, validate } from '../input.js';
import { prefersHtml } from '../negotiate.js';
import { errorBody, errorReply, html, json, noContent } from '../reply.js';
import type { RouteRegistrar } from '../server.js';
import { presentTokens, presentUser } from './present.js';
import { callContext, type RouteDeps, requireBearer } from './shared.js';

/** Token responses must never be cached (RFC 6749 5.1). */
const NO_STORE = { 'cache-control': 'no-store' };

const email = z
  .string()
  .trim()
  .max(254, { error: 'must be at most 254 characters' })
  .pipe(z.email({ error: 'must be a valid email address' }));
const nonEmpty = (max: number) =>
  z
    .string()
    .min(1, { error: 'must not be empty' })
    .max(max, { error: `must be at most ${max} characters` });
const optionalText = (max: number) =>
  z
    .string()
    .max(max, { error: `must be at most ${max} characters` })
    .optional();

const registerSchema = z.strictObject({
  email,
  password: nonEmpty(1024),
  username: nonEmpty(64),
  first_name: optionalText(64),
  last_name: optionalText(64),
});

const loginSchema = z.strictObject({
  email: nonEmpty(254),
  password: nonEmpty(1024),
  device_id: optionalText(128),
});

const refreshSchema = z.strictObject({
  refresh_token: nonEmpty(512),
  device_id: optionalText(128),
});

const logoutSchema = z.strictObject({ refresh_token: nonEmpty(512).optional() });

const profileSchema = z.strictObject({
  display_name: optionalText(64),
  bio: optionalText(500),
  first_name: optionalText(64),
  last_name: optionalText(64),
});

const confirmQuerySchema = z.strictObject({ token: nonEmpty(512) });

/** Extra room in a multipart body for the text fields and part headers besides the avatar. */
const MULTIPART_OVERHEAD_BYTES = 64 * 1024;

export function registerAuthRoutes(routes: RouteRegistrar, deps: RouteDeps): void {
  const { controlPlane, config } = deps;
  const auth = controlPlane.auth;
  const jsonBody = { json: config.BODY_LIMIT_BYTES };

  routes.route(
    'POST',
    '/auth/register',
    async (request) => {
      const input = request.json(registerSchema);
      const response = await auth.register(
        {
          email: input.email,
          password: input.password,
          username: input.username,
          firstName: input.first_name ?? '',
          lastName: input.last_name ?? '',
        },
        callContext(request),
      );
      return json({ user: presentUser(response.userInfo) }, 201, NO_STORE);
    },
    { body: jsonBody },
  );

  routes.route(
    'POST',
    '/auth/login',
    async (request) => {
      const input = request.json(loginSchema);
      const response = await auth.authenticate(
        {
          email: input.email,
          password: input.password,
          deviceId: input.device_id ?? '',
          ipAddress: request.remoteAddress,
        },
        callContext(request),
      );
      return json(presentTokens(response), 200, NO_STORE);
    },
    { body: jsonBody },
  );

  routes.route('GET', '/auth/validate', async (request) => {
    const token = requireBearer(request);
    const response = await auth.validateToken({ token }, callContext(request, token));
    if (!response.valid) throw new UnauthenticatedError('invalid token');
    return json(
      {
        valid: true,
        user: presentUser(response.userInfo),
        expires_at: response.expiresAt?.toISOString() ?? null,
        session_id: response.sessionId,
      },
      200,
      NO_STORE,
    );
  });

  routes.route(
    'POST',
    '/auth/refresh',
    async (request) => {
      const input = request.json(refreshSchema);
      const response = await auth.refreshToken(
        {
          refreshToken: input.refresh_token,
          deviceId: input.device_id ?? '',
          ipAddress: request.remoteAddress,
        },
        callContext(request),
      );
      return json(presentTokens(response), 200, NO_STORE);
    },
    { body: jsonBody },
  );

  routes.route(
    'POST',
    '/auth/logout',
    async (request) => {
      const token = requireBearer(request);
      const input = request.json(logoutSchema);
      // The refresh token first: if it is not a valid one the request fails having changed
      // nothing. It is usually of the bearer's own session (revoking that again below is a
      // no-op); one of another session, e.g. another device, is ended too.
      if (input.refresh_token) {
        await auth.revokeToken(
          { token: input.refresh_token, tokenTypeHint: 'refresh_token' },
          callContext(request, token),
        );
      }
      await auth.revokeToken({ token, tokenTypeHint: 'access_token' }, callContext(request, token));
      return noContent(NO_STORE);
    },
    { body: { ...jsonBody, optional: true } },
  );

  routes.route(
    'PUT',
    '/auth/profile',
    async (request) => {
      const token = requireBearer(request);
      const update =
        request.bodyKind === 'multipart'
          ? profileFromMultipart(request, config.AVATAR_LIMIT_BYTES)
          : profileFromJson(request);
      const response = await auth.updateProfile(update, callContext(request, token));
      return json({ user: presentUser(response.userInfo) }, 200, NO_STORE);
    },
    {
      body: {
        json: config.BODY_LIMIT_BYTES,
        multipart: config.AVATAR_LIMIT_BYTES + MULTIPART_OVERHEAD_BYTES,
      },
    },
  );

  routes.route('GET', '/auth/confirm', async (request) => {
    const asHtml = prefersHtml(request.header('accept'));
    try {
      const { token } = validate(confirmQuerySchema, Object.fromEntries(request.query), 'query string');
      const response = await auth.confirmEmail({ token }, callContext(request));
      const user = presentUser(response.userInfo);
      if (asHtml) {
        return html(
          confirmationPage(true, `Thank you, ${user.username}: your email address is confirmed.`),
          200,
          NO_STORE,
        );
      }
      return json({ confirmed: true, user }, 200, NO_STORE);
    } catch (error) {
      if (!asHtml) throw error;
      // errorReply logs an unexpected failure and decides the status; the page says the rest.
      const { status } = errorReply(error, request.log);
      const { message } = errorBody(toVezaError(error)).error;
      return html(
        confirmationPage(false, `This confirmation link cannot be used: ${message}.`),
        status,
        NO_STORE,
      );
    }
  });
}

function profileFromJson(request: EdgeRequest): UpdateProfileRequest {
  const input = request.json(profileSchema);
  return toUpdate(input, Buffer.alloc(0));
}

function profileFromMultipart(request: EdgeRequest, avatarLimit: number): UpdateProfileRequest {
  const fields: Record<string, string> = {};
  let avatar: Buffer = Buffer.alloc(0);
  const seen = new Set<string>();
  for (const part of request.multipart()) {
    if (seen.has(part.name))
      throw new InvalidArgumentError(`field "${part.name}" appears more than once`, part.name);
    seen.add(part.name);
    if (part.name === 'avatar') {
      if (part.data.length > avatarLimit) {
        throw new PayloadTooLargeError(
          `avatar is ${part.data.length} bytes; the limit is ${avatarLimit} bytes`,
        );
      }
      avatar = part.data;
      continue;
    }
    if (part.filename !== undefined) {
      throw new InvalidArgumentError(`field "${part.name}" must be a text field, not a file`, part.name);
    }
    fields[part.name] = decodeUtf8(part.data, `field "${part.name}"`);
  }
  return toUpdate(validate(profileSchema, fields, 'form data'), avatar);
}

function toUpdate(input: z.output<typeof profileSchema>, avatar: Buffer): UpdateProfileRequest {
  return {
    ...(input.display_name === undefined ? {} : { displayName: input.display_name }),
    ...(input.bio === undefined ? {} : { bio: input.bio }),
    ...(input.first_name === undefined ? {} : { firstName: input.first_name }),
    ...(input.last_name === undefined ? {} : { lastName: input.last_name }),
    avatarData: avatar,
  };
}

const escapeHtml = (value: string) => value.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);

function confirmationPage(ok: boolean, message: string): string {
  const title = ok ? 'Email confirmed' : 'Confirmation failed';
  return [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${title} · Veza Live</title></head>`,
    '<body style="font-family: system-ui, sans-serif; max-width: 32rem; margin: 4rem auto; padding: 0 1rem">',
    `<h1>${title}</h1>`,
    `<p>${escapeHtml(message)}</p>`,
    '<p><a href="/">Go to Veza Live</a></p>',
    '</body></html>',
  ].join('\n');
}
