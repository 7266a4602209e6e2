/**
 * Truncation checks for the two containers whose decoders stop quietly at a cut: a WAV
 * ends wherever its bytes end, and an Ogg stream's length is only known from its last page.
 * Both say in their own bytes how they should end, so a cut is visible without decoding.
 * (MP3 with a Xing/Info header and FLAC declare their length, which the decode pass checks.)
 */
import { open } from 'node:fs/promises';

/** The reason the file is truncated, or null when it ends where it says it does. */
export async function findTruncation(file: string, formatName: string | null): Promise<string | null> {
  const formats = (formatName ?? '').split(',');
  if (formats.includes('wav')) return checkWav(file);
  if (formats.includes('ogg')) return checkOgg(file);
  return null;
}

async function checkWav(file: string): Promise<string | null> {
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    const header = Buffer.alloc(12);
    await handle.read(header, 0, 12, 0);
    if (header.toString('latin1', 0, 4) !== 'RIFF' || header.toString('latin1', 8, 12) !== 'WAVE')
      return null;
    const declared = header.readUInt32LE(4);
    // Writers that could not seek back (pipes) leave 0 or 0xFFFFFFFF: the length is unknown.
    if (declared === 0 || declared === 0xffffffff) return null;
    const expected = declared + 8;
    // A missing pad byte after an odd-sized chunk is common and harmless.
    if (size + 1 < expected) {
      return `the file is truncated: its WAV header declares ${expected} bytes but only ${size} arrived`;
    }
    return null;
  } finally {
    await handle.close();
  }
}

const OGG_CAPTURE = Buffer.from('OggS', 'latin1');
const OGG_EOS = 0x04;
/** An Ogg page is at most 27 + 255 + 255 * 255 bytes. */
const OGG_MAX_PAGE = 27 + 255 + 255 * 255;

async function checkOgg(file: string): Promise<string | null> {
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    const length = Math.min(size, OGG_MAX_PAGE * 2);
    const tail = Buffer.alloc(length);
    await handle.read(tail, 0, length, size - length);
    // Walk back to the last page that is complete; a cut leaves a partial page after it.
    let at = tail.lastIndexOf(OGG_CAPTURE);
    while (at >= 0) {
      const pageEnd = oggPageEnd(tail, at);
      if (pageEnd !== null && pageEnd <= tail.length) {
        const complete = pageEnd === tail.length;
        const eos = ((tail[at + 5] ?? 0) & OGG_EOS) !== 0;
        if (complete && eos) return null;
        return 'the file is truncated: its Ogg stream stops before its last page';
      }
      at = at === 0 ? -1 : tail.lastIndexOf(OGG_CAPTURE, at - 1);
    }
    return 'the file is truncated: no complete Ogg page was found at its end';
  } finally {
    await handle.close();
  }
}

function oggPageEnd(buffer: Buffer, at: number): number | null {
  if (at + 27 > buffer.length) return null;
  const segments = buffer[at + 26] ?? 0;
  if (at + 27 + segments > buffer.length) return null;
  let body = 0;
  for (let i = 0; i < segments; i++) body += buffer[at + 27 + i] ?? 0;
  return at + 27 + segments + body;
}
