/**
 * Stage 5: the embedded cover picture, copied out as it is when it is a JPEG or PNG and
 * re-encoded to JPEG otherwise (browsers show no BMP/TIFF in an <img> reliably).
 */
import path from 'node:path';
import { type ProbeStream, runFfmpeg } from '../../common/index.js';

export interface CoverFile {
  /** Relative to the output directory. */
  path: string;
  contentType: string;
}

export async function extractCover(
  file: string,
  stream: ProbeStream,
  outDir: string,
  signal?: AbortSignal,
): Promise<CoverFile> {
  const copy = stream.codec_name === 'mjpeg' || stream.codec_name === 'png';
  const cover: CoverFile =
    stream.codec_name === 'png'
      ? { path: 'cover.png', contentType: 'image/png' }
      : { path: 'cover.jpg', contentType: 'image/jpeg' };
  await runFfmpeg({
    input: file,
    outputs: [
      {
        target: path.join(outDir, cover.path),
        options: [
          '-map',
          `0:${stream.index}`,
          '-frames:v',
          '1',
          ...(copy ? ['-c:v', 'copy'] : ['-c:v', 'mjpeg', '-q:v', '3']),
          '-f',
          'image2',
        ],
      },
    ],
    ...(signal ? { signal } : {}),
    timeoutMs: 30_000,
  });
  return cover;
}
