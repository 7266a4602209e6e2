/**
 * Levels for the studio's meter. Before going live the meter reads the local track through a
 * Web Audio AnalyserNode, with no server involved, so a muted or wrong mic is caught early;
 * once live it shows what the SFU's AudioLevelObserver hears (see pages/studio.ts).
 */

export interface LocalLevel {
  /** The latest RMS level mapped to 0..1 on a dB scale (-60 dBFS .. 0 dBFS). */
  value(): number;
  stop(): void;
}

/** A level in dBFS (or dBov, the same scale) mapped to 0..1 over -60..0 dB, the meter's range. */
export function dbToUnit(db: number): number {
  if (!Number.isFinite(db)) return 0;
  return Math.min(1, Math.max(0, (db + 60) / 60));
}

/**
 * Firefox refuses to connect a microphone stream to a context running at another sample
 * rate (Chromium resamples), so the track's own rate is tried first, then common ones.
 */
function connectSource(track: MediaStreamTrack): {
  context: AudioContext;
  source: MediaStreamAudioSourceNode;
} {
  const own = track.getSettings().sampleRate;
  const rates = [own, undefined, 48_000, 44_100].filter((rate, index, all) => all.indexOf(rate) === index);
  let lastError: unknown;
  for (const sampleRate of rates) {
    const context = new AudioContext(sampleRate ? { sampleRate } : undefined);
    try {
      return { context, source: context.createMediaStreamSource(new MediaStream([track])) };
    } catch (error) {
      lastError = error;
      void context.close().catch(() => undefined);
    }
  }
  throw lastError;
}

export function localLevel(track: MediaStreamTrack): LocalLevel {
  const { context, source } = connectSource(track);
  // Browsers may hold a context suspended until the page gets a gesture (autoplay rules),
  // and resume() then stays pending: never wait on it. The first click or key press
  // anywhere starts the meter.
  if (context.state === 'suspended') void context.resume().catch(() => undefined);
  const resumeOnGesture = () => {
    if (context.state === 'suspended') void context.resume().catch(() => undefined);
  };
  const gestures = ['pointerdown', 'keydown'] as const;
  for (const gesture of gestures) document.addEventListener(gesture, resumeOnGesture, { capture: true });
  const analyser = context.createAnalyser();
  analyser.fftSize = 1024;
  source.connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  return {
    value() {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const sample of samples) sum += sample * sample;
      const rms = Math.sqrt(sum / samples.length);
      return dbToUnit(20 * Math.log10(rms));
    },
    stop() {
      for (const gesture of gestures)
        document.removeEventListener(gesture, resumeOnGesture, { capture: true });
      source.disconnect();
      void context.close().catch(() => undefined);
    },
  };
}

/** Drives a <meter> at about 20 updates per second while the page is visible. */
export function animateMeter(meter: HTMLMeterElement, read: () => number): () => void {
  let frame = 0;
  let last = 0;
  let smoothed = 0;
  const tick = (now: number) => {
    frame = requestAnimationFrame(tick);
    if (now - last < 50) return;
    last = now;
    const level = read();
    // Fast attack, slow release, like a hardware meter.
    smoothed = level > smoothed ? level : smoothed * 0.85 + level * 0.15;
    meter.value = smoothed;
    meter.setAttribute('aria-valuetext', `${Math.round(smoothed * 100)} percent`);
  };
  frame = requestAnimationFrame(tick);
  return () => cancelAnimationFrame(frame);
}
