import { describe, expect, it } from 'vitest';
import { detectImageType } from './avatars.js';

const hex = (value: string) => Buffer.from(value.replaceAll(' ', ''), 'hex');

describe('detectImageType', () => {
  it('recognises PNG, JPEG, GIF and WebP by their magic numbers', () => {
    expect(detectImageType(hex('89504e47 0d0a1a0a 0000'))).toEqual({ ext: 'png', contentType: 'image/png' });
    expect(detectImageType(hex('ffd8ffe0 0010'))).toEqual({ ext: 'jpg', contentType: 'image/jpeg' });
    expect(detectImageType(Buffer.from('GIF89a...'))).toEqual({ ext: 'gif', contentType: 'image/gif' });
    expect(detectImageType(Buffer.from('GIF87a...'))).toEqual({ ext: 'gif', contentType: 'image/gif' });
    expect(detectImageType(Buffer.from('RIFF\x10\x00\x00\x00WEBPVP8 '))).toEqual({
      ext: 'webp',
      contentType: 'image/webp',
    });
  });

  it('rejects everything else, including truncated headers and other RIFF files', () => {
    expect(detectImageType(Buffer.alloc(0))).toBeNull();
    expect(detectImageType(hex('89504e47'))).toBeNull();
    expect(detectImageType(Buffer.from('RIFF\x10\x00\x00\x00WAVEfmt '))).toBeNull();
    expect(detectImageType(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>'))).toBeNull();
    expect(detectImageType(Buffer.from('GIF90a'))).toBeNull();
  });
});
