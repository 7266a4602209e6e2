/**
 * The one codec a Veza Live router offers: Opus at 48 kHz, stereo capable, with in-band FEC (survives
 * loss without retransmission) and DTX (near-silent talk costs almost no packets).
 */
import type { types as ms } from 'mediasoup';

export const OPUS: ms.RtpCodecCapability = {
  kind: 'audio',
  mimeType: 'audio/opus',
  clockRate: 48000,
  channels: 2,
  parameters: { useinbandfec: 1, usedtx: 1, 'sprop-stereo': 1 },
};

export const MEDIA_CODECS: ms.RtpCodecCapability[] = [OPUS];
