/**
 * SDP for a non-browser peer of mediasoup. mediasoup is ICE-lite and never sends SDP: the
 * client builds the remote description from the transport's ICE and DTLS parameters and the
 * RTP parameters (mediasoup-client's RemoteSdp does the same for browsers).
 *
 * The local side (node-datachannel) is always the offerer, so its DTLS fingerprint is known
 * before `connectTransport`, and the SFU already knows our DTLS role when our ClientHello
 * arrives (otherwise mediasoup drops it and the join waits for a DTLS retransmission).
 */
import type {
  DtlsParameters,
  FingerprintAlgorithm,
  IceCandidate,
  IceParameters,
  RtpParameters,
} from 'mediasoup-client/types';

export interface RemoteTransport {
  iceParameters: IceParameters;
  iceCandidates: IceCandidate[];
  dtlsParameters: DtlsParameters;
}

/** A candidate's address: mediasoup 3.12 names the field `ip`; later versions `address`. */
export function candidateAddress(candidate: IceCandidate): string {
  return candidate.address ?? candidate.ip ?? '';
}

/** The address of the transport's first UDP candidate: where the SFU serving it listens. */
export function udpAddressOf(transport: Pick<RemoteTransport, 'iceCandidates'>): string {
  const candidate = transport.iceCandidates.find((c) => c.protocol === 'udp');
  return candidate ? candidateAddress(candidate) : '';
}

/**
 * The SFU's answer to our offer: one audio section, `recvonly` when we publish, `sendonly`
 * (with the consumer's SSRC) when we listen. UDP candidates only: the benchmark measures the
 * UDP path.
 */
export function remoteAnswer(options: {
  transport: RemoteTransport;
  mid: string;
  direction: 'recvonly' | 'sendonly';
  rtpParameters: Pick<RtpParameters, 'codecs' | 'encodings' | 'rtcp'>;
}): string {
  const { transport, mid, direction, rtpParameters } = options;
  const fingerprint =
    transport.dtlsParameters.fingerprints.find((f) => f.algorithm === 'sha-256') ??
    transport.dtlsParameters.fingerprints[0];
  if (!fingerprint) throw new Error('the transport has no DTLS fingerprint');
  const codecs = rtpParameters.codecs;
  const lines = [
    'v=0',
    `o=- ${Date.now()} 1 IN IP4 127.0.0.1`,
    's=-',
    't=0 0',
    'a=ice-lite',
    `a=group:BUNDLE ${mid}`,
    'a=msid-semantic: WMS *',
    `a=fingerprint:${fingerprint.algorithm} ${fingerprint.value}`,
    `m=audio 7 UDP/TLS/RTP/SAVPF ${codecs.map((c) => c.payloadType).join(' ')}`,
    'c=IN IP4 127.0.0.1',
    `a=mid:${mid}`,
    `a=${direction}`,
    `a=ice-ufrag:${transport.iceParameters.usernameFragment}`,
    `a=ice-pwd:${transport.iceParameters.password}`,
  ];
  for (const candidate of transport.iceCandidates) {
    if (candidate.protocol !== 'udp') continue;
    const address = candidateAddress(candidate);
    lines.push(
      `a=candidate:${candidate.foundation} 1 udp ${candidate.priority} ${address} ${candidate.port} typ ${candidate.type}`,
    );
  }
  lines.push('a=end-of-candidates', 'a=setup:passive', 'a=rtcp-mux', 'a=rtcp-rsize');
  for (const codec of codecs) {
    const [, name] = codec.mimeType.split('/');
    lines.push(
      `a=rtpmap:${codec.payloadType} ${name}/${codec.clockRate}${codec.channels && codec.channels > 1 ? `/${codec.channels}` : ''}`,
    );
    const params = Object.entries(codec.parameters ?? {}).map(([key, value]) => `${key}=${String(value)}`);
    if (params.length > 0) lines.push(`a=fmtp:${codec.payloadType} ${params.join(';')}`);
  }
  if (direction === 'sendonly') {
    const cname = rtpParameters.rtcp?.cname ?? 'veza-bench';
    for (const encoding of rtpParameters.encodings ?? []) {
      if (encoding.ssrc !== undefined) {
        lines.push(`a=ssrc:${encoding.ssrc} cname:${cname}`, `a=ssrc:${encoding.ssrc} msid:veza bench`);
      }
    }
    lines.push('a=msid:veza bench');
  }
  return `${lines.join('\r\n')}\r\n`;
}

/** Our DTLS parameters from our own SDP: we are the offerer (actpass) and the SFU answers passive, so we are the client. */
export function localDtlsParameters(sdp: string): DtlsParameters {
  const match = /^a=fingerprint:(\S+) (\S+)/m.exec(sdp);
  if (!match?.[1] || !match[2]) throw new Error('our local description has no fingerprint');
  return {
    role: 'client',
    fingerprints: [
      { algorithm: match[1].toLowerCase() as FingerprintAlgorithm, value: match[2].toUpperCase() },
    ],
  };
}
