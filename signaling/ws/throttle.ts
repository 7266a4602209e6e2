/**
 * Per-key trailing throttle: the first value for a key goes out at once, later ones at most
 * once per interval, and the last value of a burst always goes out. Used where only the
 * latest value matters (listener counts), so a thousand listeners joining in a second cost
 * a handful of notifications and control-plane calls, not a thousand.
 */
export interface KeyedThrottle<K, V> {
  push(key: K, value: V): void;
  /** Drops any pending value for `key`. */
  forget(key: K): void;
  close(): void;
}

export function keyedThrottle<K, V>(
  intervalMs: number,
  emit: (key: K, value: V) => void,
): KeyedThrottle<K, V> {
  const state = new Map<K, { last: number; pending?: { value: V }; timer?: ReturnType<typeof setTimeout> }>();
  const fire = (key: K) => {
    const entry = state.get(key);
    if (!entry?.pending) return;
    const { value } = entry.pending;
    entry.pending = undefined;
    entry.timer = undefined;
    entry.last = Date.now();
    emit(key, value);
  };
  return {
    push(key, value) {
      let entry = state.get(key);
      if (!entry) {
        entry = { last: 0 };
        state.set(key, entry);
      }
      entry.pending = { value };
      if (entry.timer !== undefined) return;
      const wait = entry.last + intervalMs - Date.now();
      if (wait <= 0) fire(key);
      else {
        entry.timer = setTimeout(() => fire(key), wait);
        entry.timer.unref?.();
      }
    },
    forget(key) {
      const entry = state.get(key);
      if (entry?.timer !== undefined) clearTimeout(entry.timer);
      state.delete(key);
    },
    close() {
      for (const entry of state.values()) if (entry.timer !== undefined) clearTimeout(entry.timer);
      state.clear();
    },
  };
}
