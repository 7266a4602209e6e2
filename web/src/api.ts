/**
 * The REST API as the browser sees it. Every response is checked against a schema before
 * use, so a server change shows up as a clear error naming the field instead of `undefined`
 * deep in the UI. zod/mini with named imports keeps this to a few KB of the bundle.
 */
import {
  array,
  boolean,
  type core,
  type infer as Infer,
  looseObject,
  nullish,
  number,
  safeParse,
  string,
  union,
} from 'zod/mini';

export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** The request field the error is about, when the server names one. */
    readonly field?: string,
  ) {
    super(message);
  }
}

const errorBody = looseObject({
  error: looseObject({ code: string(), message: string(), field: nullish(string()) }),
});

/** Ids are int64 on the server; JSON may carry them as numbers or strings. */
const id = union([number(), string()]);

export const userSchema = looseObject({
  id: nullish(id),
  email: nullish(string()),
  username: nullish(string()),
  display_name: nullish(string()),
  roles: nullish(array(string())),
});
export type User = Infer<typeof userSchema>;

/** The signed-in user's own account, as /auth/validate and PUT /auth/profile answer it. */
export const profileSchema = looseObject({
  id,
  username: string(),
  display_name: nullish(string()),
  bio: nullish(string()),
  avatar_url: nullish(string()),
});
export type Profile = Infer<typeof profileSchema>;

const followingSchema = looseObject({
  following: array(looseObject({ user_id: id, username: string(), followed_at: nullish(string()) })),
});

export const tokensSchema = looseObject({
  access_token: string(),
  refresh_token: string(),
  expires_in: number(),
  user: nullish(userSchema),
});
export type Tokens = Infer<typeof tokensSchema>;

export const streamSchema = looseObject({
  id,
  title: string(),
  description: nullish(string()),
  genre: nullish(string()),
  status: string(),
  listener_count: nullish(number()),
  owner_id: nullish(id),
  owner_username: nullish(string()),
  started_at: nullish(string()),
  is_public: nullish(boolean()),
  allow_anonymous: nullish(boolean()),
});
export type StreamInfo = Infer<typeof streamSchema>;

const iceServerSchema = looseObject({
  urls: union([string(), array(string())]),
  username: nullish(string()),
  credential: nullish(string()),
});

export const startStreamSchema = looseObject({
  stream_id: id,
  chat_room_id: nullish(id),
  signaling_url: nullish(string()),
  ice_servers: nullish(array(iceServerSchema)),
  stream: streamSchema,
});
export type StartedStream = Infer<typeof startStreamSchema>;

export const trackSchema = looseObject({
  id,
  title: string(),
  status: string(),
  failure_reason: nullish(string()),
  progress: nullish(number()),
  duration: nullish(number()),
  format: nullish(string()),
  renditions: nullish(array(looseObject({ format: string(), bitrate: nullish(number()), url: string() }))),
  waveform_url: nullish(string()),
  hls_url: nullish(string()),
  created_at: nullish(string()),
});
export type TrackInfo = Infer<typeof trackSchema>;

export const waveformSchema = looseObject({ peaks: array(number()) });

const uploadedSchema = looseObject({ track_id: id, track: nullish(trackSchema) });

export function streamIdOf(stream: StreamInfo): string {
  return String(stream.id);
}

interface RequestOptions<T> {
  /** A JSON body, or a FormData sent as multipart (the browser sets its content type). */
  body?: unknown;
  token?: string | null;
  /** A zod/mini schema, or a full zod one of the shared contracts (the analytics pages use those). */
  schema: core.$ZodType<T>;
}

export async function request<T>(method: string, path: string, options: RequestOptions<T>): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  const isForm = typeof FormData !== 'undefined' && options.body instanceof FormData;
  if (options.body !== undefined && !isForm) headers['content-type'] = 'application/json';
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body:
        options.body === undefined
          ? undefined
          : options.body instanceof FormData
            ? options.body
            : JSON.stringify(options.body),
      credentials: 'same-origin',
    });
  } catch {
    throw new ApiError(
      0,
      'unavailable',
      'The server cannot be reached. Check your connection and try again.',
    );
  }
  const text = await response.text();
  let json: unknown = null;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
  }
  if (!response.ok) {
    const parsed = errorBody.safeParse(json);
    if (parsed.success) {
      const { code, message, field } = parsed.data.error;
      throw new ApiError(response.status, code, message, field ?? undefined);
    }
    throw new ApiError(
      response.status,
      'internal',
      `The server answered ${response.status} ${response.statusText}.`,
    );
  }
  const parsed = safeParse(options.schema, json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? issue.path.join('.') : 'body';
    throw new ApiError(
      response.status,
      'bad_response',
      `Unexpected response from ${path}: ${where} ${issue?.message ?? ''}`,
    );
  }
  return parsed.data;
}

const anything = looseObject({});
/** 204 No Content: no body at all. */
const nothing = nullish(anything);

export const restApi = {
  register: (email: string, password: string, username: string) =>
    request('POST', '/auth/register', { body: { email, password, username }, schema: anything }),
  login: (email: string, password: string) =>
    request('POST', '/auth/login', { body: { email, password }, schema: tokensSchema }),
  refresh: (refreshToken: string) =>
    request('POST', '/auth/refresh', { body: { refresh_token: refreshToken }, schema: tokensSchema }),
  logout: (token: string, refreshToken: string) =>
    request('POST', '/auth/logout', { body: { refresh_token: refreshToken }, token, schema: anything }),
  /** One page of the live directory; `nextPageToken` is null on the last page. */
  listStreams: async (
    pageToken?: string,
  ): Promise<{ streams: StreamInfo[]; nextPageToken: string | null }> => {
    const query = pageToken ? `?page_token=${encodeURIComponent(pageToken)}` : '';
    const page = await request('GET', `/streams${query}`, {
      schema: looseObject({ streams: array(streamSchema), next_page_token: nullish(string()) }),
    });
    return { streams: page.streams, nextPageToken: page.next_page_token ?? null };
  },
  getStream: async (streamId: string, token: string | null): Promise<StreamInfo> =>
    (
      await request('GET', `/stream/${encodeURIComponent(streamId)}`, {
        token,
        schema: looseObject({ stream: streamSchema }),
      })
    ).stream,
  startStream: (token: string, title: string) =>
    request('POST', '/stream/start', {
      token,
      body: { title, is_public: true, allow_anonymous: true },
      schema: startStreamSchema,
    }),
  stopStream: (token: string, streamId: string) =>
    request('POST', `/stream/${encodeURIComponent(streamId)}/stop`, { token, body: {}, schema: anything }),
  getTrack: async (token: string | null, trackId: string): Promise<TrackInfo> =>
    (
      await request('GET', `/tracks/${encodeURIComponent(trackId)}`, {
        token,
        schema: looseObject({ track: trackSchema }),
      })
    ).track,
  listTracks: async (token: string): Promise<TrackInfo[]> =>
    (await request('GET', '/tracks', { token, schema: looseObject({ tracks: array(trackSchema) }) })).tracks,
  /** The signed-in user's account (bio and avatar included), through the token check. */
  me: async (token: string): Promise<Profile> =>
    (await request('GET', '/auth/validate', { token, schema: looseObject({ user: profileSchema }) })).user,
  /** PUT /auth/profile: JSON for text fields, multipart (a FormData) when an avatar goes along. */
  updateProfile: async (
    token: string,
    update: FormData | { display_name?: string; bio?: string },
  ): Promise<Profile> =>
    (
      await request('PUT', '/auth/profile', {
        token,
        body: update,
        schema: looseObject({ user: profileSchema }),
      })
    ).user,
  follow: (token: string, userId: string) =>
    request('PUT', `/users/${encodeURIComponent(userId)}/follow`, { token, schema: nothing }),
  unfollow: (token: string, userId: string) =>
    request('DELETE', `/users/${encodeURIComponent(userId)}/follow`, { token, schema: nothing }),
  /** The ids of the broadcasters the signed-in user follows. */
  following: async (token: string): Promise<string[]> =>
    (await request('GET', '/me/following', { token, schema: followingSchema })).following.map((entry) =>
      String(entry.user_id),
    ),
};

/**
 * A single multipart upload (POST /stream/upload). XHR rather than fetch: only XHR reports
 * upload progress for a request body. Resolves with the new track id.
 */
export function uploadTrack(
  token: string,
  file: File,
  fields: { title: string },
  onProgress: (loaded: number, total: number) => void,
): Promise<string> {
  const form = new FormData();
  form.append('title', fields.title);
  form.append('file', file, file.name);
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/stream/upload');
    xhr.setRequestHeader('authorization', `Bearer ${token}`);
    xhr.setRequestHeader('accept', 'application/json');
    xhr.upload.addEventListener('progress', (event) => {
      if (event.lengthComputable) onProgress(event.loaded, event.total);
    });
    xhr.addEventListener('error', () =>
      reject(
        new ApiError(0, 'unavailable', 'The upload was interrupted. Check your connection and try again.'),
      ),
    );
    xhr.addEventListener('load', () => {
      let json: unknown = null;
      try {
        json = JSON.parse(xhr.responseText);
      } catch {
        json = null;
      }
      if (xhr.status < 200 || xhr.status >= 300) {
        const parsed = errorBody.safeParse(json);
        if (parsed.success) {
          const { code, message, field } = parsed.data.error;
          reject(new ApiError(xhr.status, code, message, field ?? undefined));
        } else reject(new ApiError(xhr.status, 'internal', `The server answered ${xhr.status}.`));
        return;
      }
      const parsed = uploadedSchema.safeParse(json);
      if (!parsed.success) {
        reject(new ApiError(xhr.status, 'bad_response', 'Unexpected response from /stream/upload'));
        return;
      }
      resolve(String(parsed.data.track_id));
    });
    xhr.send(form);
  });
}
