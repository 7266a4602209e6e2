/** Pieces shared by the upload, track and track-list pages. */
import type { TrackInfo } from '../api.js';
import { h } from '../dom.js';

/** What a track's status means to its owner, in words. */
export function describeStatus(track: Pick<TrackInfo, 'status' | 'progress' | 'failure_reason'>): string {
  switch (track.status) {
    case 'uploading':
      return 'Uploading';
    case 'uploaded':
      return 'Waiting to be processed';
    case 'processing':
      return `Processing (${Math.round(track.progress ?? 0)} %)`;
    case 'ready':
      return 'Ready';
    case 'failed':
      return `Failed: ${track.failure_reason || 'unknown reason'}`;
    default:
      return track.status;
  }
}

export function statusBadge(): HTMLElement {
  return h('p', { class: 'status', role: 'status', 'aria-live': 'polite', 'data-testid': 'track-status' });
}

export function showStatus(
  element: HTMLElement,
  track: Pick<TrackInfo, 'status' | 'progress' | 'failure_reason'>,
): void {
  element.dataset.status = track.status;
  element.textContent = describeStatus(track);
  element.classList.toggle('error', track.status === 'failed');
}

export function trackLink(id: string): string {
  return `/track/${encodeURIComponent(id)}`;
}
