/**
 * Avatar images: the type is taken from the bytes (magic numbers), never from what the
 * client claims, and the object key is content-addressed so an upload never overwrites
 * another user's or an earlier avatar.
 */
import { createHash } from 'node:crypto';
import { InvalidArgumentError, PayloadTooLargeError } from '../../common/contracts/index.js';
import type { BlobStorage } from '../../common/ports/index.js';

export interface ImageType {
  ext: 'png' | 'jpg' | 'webp' | 'gif';
  contentType: string;
}

const startsWith = (data: Buffer, bytes: readonly number[], offset = 0) =>
  data.length >= offset + bytes.length && bytes.every((byte, i) => data[offset + i] === byte);
const ascii = (text: string) => [...text].map((char) => char.charCodeAt(0));

export function detectImageType(data: Buffer): ImageType | null {
  if (startsWith(data, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))
    return { ext: 'png', contentType: 'image/png' };
  if (startsWith(data, [0xff, 0xd8, 0xff])) return { ext: 'jpg', contentType: 'image/jpeg' };
  if (startsWith(data, ascii('GIF87a')) || startsWith(data, ascii('GIF89a'))) {
    return { ext: 'gif', contentType: 'image/gif' };
  }
  if (startsWith(data, ascii('RIFF')) && startsWith(data, ascii('WEBP'), 8)) {
    return { ext: 'webp', contentType: 'image/webp' };
  }
  return null;
}

/** Validates and stores an avatar; returns its blob key. */
export async function storeAvatar(
  blobs: BlobStorage,
  userId: number,
  data: Buffer,
  limitBytes: number,
): Promise<string> {
  if (data.length > limitBytes) {
    throw new PayloadTooLargeError(`avatar_data is ${data.length} bytes; the limit is ${limitBytes} bytes`);
  }
  const type = detectImageType(data);
  if (!type)
    throw new InvalidArgumentError('avatar_data must be a PNG, JPEG, WebP or GIF image', 'avatar_data');
  const digest = createHash('sha256').update(data).digest('hex');
  const key = `avatars/${userId}/${digest}.${type.ext}`;
  await blobs.put(key, data, type.contentType);
  return key;
}
