/**
 * `/track/:id`: the track's status, its waveform on a canvas and a player; a click on the
 * waveform seeks the player to that point.
 */
import { request, restApi, type TrackInfo, waveformSchema } from '../api.js';
import { accessToken } from '../auth.js';
import { errorMessage, h, statusLine } from '../dom.js';
import { sameOriginMedia } from '../media-url.js';
import { showStatus, statusBadge } from './tracks-view.js';

const POLL_MS = 2000;
const WAVE_WIDTH = 800;
const WAVE_HEIGHT = 120;

/** The file the <audio> plays: a progressive rendition (HLS needs a player library outside Safari). */
function playableUrl(track: TrackInfo): string | null {
  const renditions = track.renditions ?? [];
  const preferred = ['aac', 'opus', 'mp3'];
  for (const format of preferred) {
    const match = renditions.find((rendition) => rendition.format === format);
    if (match) return sameOriginMedia(match.url);
  }
  const other = renditions.find((rendition) => rendition.format !== 'hls');
  return other ? sameOriginMedia(other.url) : null;
}

function drawWaveform(canvas: HTMLCanvasElement, peaks: readonly number[], played: number): void {
  const context = canvas.getContext('2d');
  if (!context) return;
  const { width, height } = canvas;
  // The page's palette (light or dark): both colours keep 3:1 against the background.
  const style = getComputedStyle(canvas);
  const playedColor = style.getPropertyValue('--accent').trim() || '#0b57d0';
  const restColor = style.getPropertyValue('--border').trim() || '#8a909c';
  context.clearRect(0, 0, width, height);
  const max = Math.max(1e-9, ...peaks.map(Math.abs));
  const step = width / Math.max(1, peaks.length);
  const middle = height / 2;
  peaks.forEach((peak, index) => {
    const x = index * step;
    const bar = Math.max(1, (Math.abs(peak) / max) * middle);
    context.fillStyle = x / width < played ? playedColor : restColor;
    context.fillRect(x, middle - bar, Math.max(1, step), bar * 2);
  });
}

/** Seconds as m:ss. */
function clock(seconds: number): string {
  const whole = Math.max(0, Math.floor(seconds));
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, '0')}`;
}

export function trackPage(trackId: string) {
  return {
    title: 'Track',
    async render(main: HTMLElement) {
      const heading = h('h1', {}, 'Track');
      const trackStatus = statusBadge();
      const status = statusLine('track-page-status');
      const canvas = h('canvas', {
        width: WAVE_WIDTH,
        height: WAVE_HEIGHT,
        'data-testid': 'waveform',
        role: 'slider',
        'aria-label': 'Waveform: click to seek',
        'aria-valuemin': 0,
        'aria-valuemax': 100,
        'aria-valuenow': 0,
        'aria-valuetext': 'Not loaded',
        tabindex: 0,
        class: 'waveform',
      });
      const player = h('audio', { controls: true, preload: 'metadata', 'data-testid': 'player' });
      main.append(heading, trackStatus, canvas, player, status.element);

      let peaks: number[] = [];
      const redraw = () => {
        const duration = Number.isFinite(player.duration) ? player.duration : 0;
        const fraction = duration > 0 ? player.currentTime / duration : 0;
        drawWaveform(canvas, peaks, fraction);
        // The slider's value for assistive technology: the position, in percent and in time.
        canvas.setAttribute('aria-valuenow', String(Math.round(fraction * 100)));
        canvas.setAttribute(
          'aria-valuetext',
          duration > 0 ? `${clock(player.currentTime)} of ${clock(duration)}` : 'Not loaded',
        );
      };
      player.addEventListener('timeupdate', redraw);
      player.addEventListener('seeked', redraw);
      player.addEventListener('loadedmetadata', redraw);
      matchMedia('(prefers-color-scheme: dark)').addEventListener('change', redraw);

      const seekTo = (fraction: number) => {
        const duration = Number.isFinite(player.duration) ? player.duration : 0;
        if (duration <= 0) return;
        player.currentTime = Math.min(Math.max(fraction, 0), 1) * duration;
        redraw();
      };
      canvas.addEventListener('click', (event) => {
        const box = canvas.getBoundingClientRect();
        seekTo((event.clientX - box.left) / box.width);
      });
      canvas.addEventListener('keydown', (event) => {
        const duration = Number.isFinite(player.duration) ? player.duration : 0;
        if (duration <= 0) return;
        const delta = event.key === 'ArrowRight' ? 5 : event.key === 'ArrowLeft' ? -5 : 0;
        if (delta === 0) return;
        event.preventDefault();
        seekTo((player.currentTime + delta) / duration);
      });

      let shown = false;
      const load = async (): Promise<boolean> => {
        const track = await restApi.getTrack(await accessToken(), trackId);
        heading.textContent = track.title;
        document.title = `${track.title} · Veza Live`;
        showStatus(trackStatus, track);
        if (track.status !== 'ready') return track.status === 'failed';
        if (shown) return true;
        shown = true;
        const url = playableUrl(track);
        if (url) player.src = url;
        if (track.hls_url) player.dataset.hls = sameOriginMedia(track.hls_url);
        if (track.waveform_url) {
          const waveform = await request('GET', sameOriginMedia(track.waveform_url), {
            schema: waveformSchema,
          });
          peaks = waveform.peaks;
          redraw();
          canvas.dataset.points = String(peaks.length);
        }
        return true;
      };
      const poll = async () => {
        try {
          if (await load()) return;
        } catch (error) {
          status.error(`Could not load the track: ${errorMessage(error)}`);
        }
        setTimeout(() => void poll(), POLL_MS);
      };
      await poll();
    },
  };
}
